"""One generation run: what to generate (`pipe_configs`), on which devices and processes, in which
dtype, written where. Frozen dataclasses; every value is checked where it is set."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vinf_jax.config.dtypes import DEFAULT_DTYPE, normalize_dtype
from vinf_jax.config.values import as_int, as_number, as_string, choice, fail, is_int, set_field
from vinf_jax.config.video_infinity import VideoInfinityConfig
from vinf_jax.errors import ConfigError

# "auto": the sampler the checkpoint's scheduler config names (vinf_jax.sampling.auto)
SCHEDULERS = ("auto", "sde-dpmsolver++", "dpmsolver++", "ddim", "videocrafter-ddim", "t2v-turbo")
SAVE_FRAMES = (None, "npy")
SEED_LIMIT = 2**32
_ENV_VARS = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}


@dataclass(frozen=True)
class PipeConfig:
    """`pipe_configs`: what to generate. `num_frames` is F, the frames of one clip."""

    prompts: tuple[str, ...]
    steps: int = 30
    guidance_scale: float = 12.0
    fps: int = 24
    num_frames: int = 24
    height: int = 320
    width: int = 512
    export_fps: int = 8
    file_name: str | None = None
    negative_prompt: str = ""
    scheduler: str = "auto"
    # T2V-Turbo only (docs/method.md §12.3); null = the checkpoint kind's default
    lcm_origin_steps: int | None = None
    motion_gs: float | None = None
    motion_percentage: float | None = None

    def __post_init__(self):
        p = "pipe_configs"
        if not isinstance(self.prompts, (list, tuple)) or not self.prompts:
            raise fail(f"{p}.prompts", "a non-empty list of strings", self.prompts)
        for i, prompt in enumerate(self.prompts):
            as_string(prompt, f"{p}.prompts[{i}]", allow_empty=True)
        set_field(self, "prompts", tuple(self.prompts))
        set_field(self, "steps", as_int(self.steps, f"{p}.steps", lo=1))
        set_field(self, "guidance_scale", as_number(self.guidance_scale, f"{p}.guidance_scale"))
        set_field(self, "fps", as_number(self.fps, f"{p}.fps", positive=True))
        set_field(self, "num_frames", as_int(self.num_frames, f"{p}.num_frames", lo=1))
        for name in ("height", "width"):
            value = getattr(self, name)
            if not is_int(value) or value <= 0 or value % 8:
                raise fail(f"{p}.{name}", "a positive multiple of 8 (pixels)", value)
            set_field(self, name, int(value))
        set_field(self, "export_fps", as_number(self.export_fps, f"{p}.export_fps", positive=True))
        as_string(self.file_name, f"{p}.file_name", allow_none=True)
        as_string(self.negative_prompt, f"{p}.negative_prompt", allow_empty=True)
        choice(self.scheduler, f"{p}.scheduler", SCHEDULERS)
        if self.lcm_origin_steps is not None:
            set_field(self, "lcm_origin_steps", as_int(self.lcm_origin_steps, f"{p}.lcm_origin_steps", lo=1,
                                                       hi=1000, what=" or null"))
        if self.motion_gs is not None:
            set_field(self, "motion_gs", as_number(self.motion_gs, f"{p}.motion_gs"))
        if self.motion_percentage is not None:
            value = as_number(self.motion_percentage, f"{p}.motion_percentage")
            if not 0 <= value <= 1:
                raise fail(f"{p}.motion_percentage", "a number in 0..1 or null", self.motion_percentage)
            set_field(self, "motion_percentage", value)


@dataclass(frozen=True)
class DistributedConfig:
    """`distributed`: arguments of `jax.distributed.initialize`; unset fields come from JAX_* env vars."""

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    def __post_init__(self):
        as_string(self.coordinator_address, "distributed.coordinator_address", allow_none=True)
        if self.num_processes is not None:
            set_field(self, "num_processes", as_int(self.num_processes, "distributed.num_processes", lo=1, what=" or null"))
        if self.process_id is not None:
            set_field(self, "process_id", as_int(self.process_id, "distributed.process_id", lo=0, what=" or null"))
            if self.num_processes is not None and self.process_id >= self.num_processes:
                raise fail("distributed.process_id",
                            f"an integer in 0..{self.num_processes - 1} (distributed.num_processes="
                            f"{self.num_processes})", self.process_id)

    def with_env_defaults(self, environ: Mapping[str, str] | None = None) -> DistributedConfig:
        """Fill unset fields from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID."""
        environ = os.environ if environ is None else environ
        values = dataclasses.asdict(self)
        for name, var in _ENV_VARS.items():
            text = environ.get(var, "").strip()
            if values[name] is not None or not text:
                continue
            if name == "coordinator_address":
                values[name] = text
                continue
            try:
                values[name] = int(text)
            except ValueError:
                raise ConfigError(f"distributed.{name}: environment variable {var}={text!r} is not an integer") from None
        try:
            return DistributedConfig(**values)
        except ConfigError as e:
            raise ConfigError(f"{e} (values taken from the environment: "
                              f"{', '.join(v for v in _ENV_VARS.values() if environ.get(v))})") from None


@dataclass(frozen=True)
class GenerateConfig:
    """One generation run: model, what to generate, how to split it, where to write it."""

    model: str  # "tiny-random" or a folder holding a converted checkpoint
    pipe: PipeConfig
    video_infinity: VideoInfinityConfig = VideoInfinityConfig()
    dtype: str = DEFAULT_DTYPE  # see config/dtypes.py: "auto" | "float32" | "bfloat16" | "float16"
    devices: tuple[int, ...] | int | None = None  # GPU ids, a count, or None for all available
    seed: int = 123
    base_path: str = "./exp"
    save_frames: str | None = None  # None or "npy"
    distributed: DistributedConfig = DistributedConfig()
    master_port: int | None = None  # accepted for compatibility, unused
    source: str | None = field(default=None, compare=False, hash=False)  # the file it was read from
    raw: dict = field(default_factory=dict, compare=False, hash=False, repr=False)  # to_dict() for the sidecar

    def __post_init__(self):
        as_string(self.model, "model")
        if not isinstance(self.pipe, PipeConfig):
            raise fail("pipe_configs", "a PipeConfig", self.pipe)
        if not isinstance(self.video_infinity, VideoInfinityConfig):
            raise fail("plugin_configs", "a VideoInfinityConfig", self.video_infinity)
        if not isinstance(self.distributed, DistributedConfig):
            raise fail("distributed", "a DistributedConfig", self.distributed)
        set_field(self, "dtype", normalize_dtype(self.dtype))
        set_field(self, "devices", _devices(self.devices))
        set_field(self, "seed", as_int(self.seed, "seed", lo=0, hi=SEED_LIMIT - 1))
        as_string(self.base_path, "base_path")
        choice(self.save_frames, "save_frames", SAVE_FRAMES)
        if self.master_port is not None:
            set_field(self, "master_port", as_int(self.master_port, "master_port", lo=0, hi=65535, what=" or null (unused)"))
        self.video_infinity.check_num_frames(self.pipe.num_frames)


def _devices(value: Any) -> tuple[int, ...] | int | None:
    expected = "a list of distinct GPU ids (integers >= 0), a device count >= 1, or null (all devices)"
    if value is None:
        return None
    if is_int(value):
        if value < 1:
            raise fail("devices", expected, value)
        return int(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise fail("devices", expected, value)
    for i, dev in enumerate(value):
        if not is_int(dev) or dev < 0:
            raise fail(f"devices[{i}]", "a GPU id (an integer >= 0)", dev)
    if len(set(value)) != len(value):
        dupes = sorted({d for d in value if list(value).count(d) > 1})
        raise fail("devices", f"{expected}; ids {dupes} appear more than once", list(value))
    return tuple(int(d) for d in value)

