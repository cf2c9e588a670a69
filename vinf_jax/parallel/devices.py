"""How many devices the clip axis uses: D from the config's ``devices`` and ``num_clips`` and the
devices that exist. Pure Python (no jax), so it is checked and tested without a backend."""

from __future__ import annotations

from dataclasses import dataclass

from vinf_jax.errors import ConfigError


@dataclass(frozen=True)
class DevicePlan:
    count: int  # D, the devices of the mesh axis "clips"
    reason: str  # said in the CLI summary and the sidecar


def plan_devices(devices: tuple[int, ...] | int | None, num_clips: int | None, num_available: int) -> DevicePlan:
    """Resolve D and check that the N clips split evenly over it.

    ``devices`` unset: the most devices (of those available) that divide the clips evenly, so a
    config that fixes the video (``num_clips``) runs on any machine and writes the same video.
    A count or a list of ids is taken as given and must divide the clips.
    """
    if num_available < 1:
        raise ConfigError("devices: no accelerator devices are available")
    if devices is None:
        if num_clips is None:
            return DevicePlan(num_available, f"all {num_available} available device(s), one clip each (num_clips unset)")
        count = max(d for d in range(1, min(num_clips, num_available) + 1) if num_clips % d == 0)
        if count == num_available:
            why = f"all {count} available device(s), {num_clips // count} clip(s) each"
        else:
            why = (f"{count} of {num_available} devices: the most that divide {num_clips} clips evenly "
                   f"({num_clips // count} clip(s) each)")
        return DevicePlan(count, why)
    if isinstance(devices, int):
        if devices > num_available:
            raise ConfigError(f"devices: {devices} devices requested but only {num_available} exist; "
                              f"use a count in 1..{num_available}, or leave devices unset to use the most that "
                              "divide num_clips")
        count, why = devices, f"{devices} devices, as the config says"
    else:
        missing = [d for d in devices if d >= num_available]
        if missing:
            raise ConfigError(f"devices: GPU ids {missing} do not exist; {num_available} devices are available "
                              f"(ids 0..{num_available - 1})")
        count, why = len(devices), f"{len(devices)} devices: ids {list(devices)} from the config"
    if num_clips is not None and num_clips % count:
        multiples = [count * k for k in range(1, 4)]
        if num_clips > count:
            below = (num_clips // count) * count
            multiples = sorted({below, below + count, below + 2 * count})
        divisors = [d for d in range(1, min(num_clips, num_available) + 1) if num_clips % d == 0]
        raise ConfigError(
            f"num_clips: {num_clips} clips cannot be split evenly over D={count} devices "
            f"(num_clips % D must be 0); use num_clips in {multiples} (multiples of {count}), "
            f"a device count D in {divisors} (devices), or leave devices unset")
    return DevicePlan(count, why)
