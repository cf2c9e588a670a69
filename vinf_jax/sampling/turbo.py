"""T2V-Turbo's options for one run: the timestep skeleton and motion guidance, from the call's arguments or the
checkpoint's defaults (method §12.3), and the warnings for options that cannot apply.

The converter writes a ``t2v_turbo`` block into the scheduler config of a T2V-Turbo checkpoint: its kind
(``v1``, ``v2``, ``v2-mg``) and the defaults for that kind. ``resolve`` turns (sampler, UNet, arguments)
into the sampler spec and the loop's motion input.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

from vinf_jax.errors import ConfigError, VinfWarning
from vinf_jax.sampling.schedulers import TURBO_ORIGIN_STEPS, SchedulerSpec

# per kind: what its training used (method §12.3 says why these and not app.py's)
KIND_DEFAULTS = {
    "v1": {"lcm_origin_steps": 50},
    "v2": {"lcm_origin_steps": 200},
    "v2-mg": {"lcm_origin_steps": 200, "motion_gs": 0.05, "motion_percentage": 0.5},
}
KEYS = ("lcm_origin_steps", "motion_gs", "motion_percentage")


class TurboWarning(VinfWarning):
    """A T2V-Turbo option that cannot apply to this run (ignored)."""


@dataclasses.dataclass(frozen=True)
class MotionInput:
    """The UNet's motion scale: ``gs`` while ``t >= threshold`` (= T·(1 − percentage)), 0 after."""

    gs: float
    percentage: float
    threshold: float


def _warn(message: str) -> None:
    warnings.warn(message, TurboWarning, stacklevel=4)


def resolve(spec: SchedulerSpec, scheduler_config: dict, unet_config, *, lcm_origin_steps=None, motion_gs=None,
            motion_percentage=None, negative_prompt: str = "") -> tuple[SchedulerSpec, MotionInput | None]:
    """(spec with its skeleton, motion input or None). Options that cannot apply are one warning each."""
    given = [k for k, v in zip(KEYS, (lcm_origin_steps, motion_gs, motion_percentage)) if v is not None]
    if spec.kind != "t2v-turbo":
        if given:
            _warn(f"{', '.join('pipe_configs.' + k for k in given)}: only the t2v-turbo sampler reads "
                  f"{'it' if len(given) == 1 else 'them'}; this run samples with {spec.kind}; ignored")
        return spec, None
    if unet_config.time_cond_proj_dim is None:
        raise ConfigError("pipe_configs.scheduler: 't2v-turbo' needs a T2V-Turbo UNet (one with the guidance "
                          "embedding time_cond_proj); this checkpoint's UNet has none: use 'auto' or a guided sampler")
    if negative_prompt:
        _warn("pipe_configs.negative_prompt: T2V-Turbo makes one conditional UNet pass per step (the guidance "
              "scale is an input of the UNet), so there is no unconditional pass; the negative prompt is ignored")
    block = scheduler_config.get("t2v_turbo") if isinstance(scheduler_config.get("t2v_turbo"), dict) else {}
    origin = lcm_origin_steps if lcm_origin_steps is not None else int(block.get("lcm_origin_steps", TURBO_ORIGIN_STEPS))
    spec = dataclasses.replace(spec, lcm_origin_steps=origin)
    if unet_config.motion_cond_proj_dim is None:
        unused = [k for k in given if k != "lcm_origin_steps"]
        if unused:
            _warn(f"{', '.join('pipe_configs.' + k for k in unused)}: this T2V-Turbo UNet has no motion embedding "
                  "(motion_cond_proj: v1, or v2 without motion guidance); ignored")
        return spec, None
    gs = float(motion_gs if motion_gs is not None else block.get("motion_gs", KIND_DEFAULTS["v2-mg"]["motion_gs"]))
    pct = float(motion_percentage if motion_percentage is not None
                else block.get("motion_percentage", KIND_DEFAULTS["v2-mg"]["motion_percentage"]))
    if not math.isfinite(gs):
        raise ConfigError(f"pipe_configs.motion_gs: expected a finite number, got {gs!r}")
    if not (0.0 <= pct <= 1.0):
        raise ConfigError(f"pipe_configs.motion_percentage: expected a number in 0..1, got {pct!r}")
    n_train = int(scheduler_config.get("num_train_timesteps", 1000))
    # compared with t in float32 inside the loop, as torch compares their int timestep with this Python float
    # (1000·(1 − 0.3) = 700.0000000000001 rounds to 700: motion is still on at t = 700 there and here)
    return spec, MotionInput(gs, pct, n_train * (1.0 - pct))
