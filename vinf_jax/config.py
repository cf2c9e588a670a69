"""Typed configuration: reads the original Video-Infinity JSON as-is, validates it, fails fast.

    python -m vinf_jax.generate --config configs/config.json --set model=tiny-random --set pipe_configs.steps=2

The file layout is the original one (`pipe_configs`, `plugin_configs`, `devices`, ...) plus the
`vinf_jax` keys `model`, `num_clips`, `edge_mode`, `distributed`, `save_frames`,
`pipe_configs.scheduler`, `pipe_configs.negative_prompt` and `plugin_configs.group_norm.sync`.
Every key can be overridden with `key.path=value` (value parsed as JSON, else a raw string).

All configs are frozen, hashable dataclasses so they can be static arguments of `jax.jit`.
Every user mistake is a `ConfigError` whose message names the full key path, the bad value and
what is allowed. This module must not import jax: the CLI validates before any device work.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from vinf_jax.errors import ConfigError

__all__ = [
    "AttnConfig",
    "ConfigWarning",
    "ConvLayerConfig",
    "DistributedConfig",
    "GenerateConfig",
    "GroupNormConfig",
    "Phase",
    "PipeConfig",
    "VideoInfinityConfig",
    "check_devices",
    "load_config",
    "normalize_dtype",
    "to_dict",
]

TINY_RANDOM = "tiny-random"
CHECKPOINT_MARKER = "vinf_jax_checkpoint.json"
CONVERT_COMMAND = "python -m convert.videocrafter2 --unet ... --base ... --out ..."
EDGE_MODES = ("exact", "zeros")
# "auto": the sampler the checkpoint's scheduler config names (vinf_jax.sampling.auto)
SCHEDULERS = ("auto", "sde-dpmsolver++", "dpmsolver++", "ddim", "videocrafter-ddim")
DTYPES = ("float32", "bfloat16", "float16")
SAVE_FRAMES = (None, "npy")
SEED_LIMIT = 2**32
_DTYPE_ALIASES = {
    "torch.float16": "float16", "fp16": "float16", "float16": "float16",
    "torch.bfloat16": "bfloat16", "bf16": "bfloat16", "bfloat16": "bfloat16",
    "torch.float32": "float32", "fp32": "float32", "float32": "float32",
}
_ENV_VARS = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}

# Key schema of the file: a dict is a section (an object in the JSON), None a leaf value.
_PHASE_KEYS = {"t": None, "local_biase": None, "global_biase": None}
_SCHEMA: dict[str, Any] = {
    "model": None,
    "dtype": None,
    "devices": None,
    "seed": None,
    "master_port": None,
    "base_path": None,
    "num_clips": None,
    "edge_mode": None,
    "save_frames": None,
    "distributed": {"coordinator_address": None, "num_processes": None, "process_id": None},
    "pipe_configs": {
        "prompts": None, "steps": None, "guidance_scale": None, "fps": None, "num_frames": None,
        "height": None, "width": None, "export_fps": None, "file_name": None,
        "negative_prompt": None, "scheduler": None,
    },
    "plugin_configs": {
        "attn": {
            "padding": None, "top_k": None, "top_k_chunk_size": None, "attn_scale": None,
            "token_num_scale": None, "dynamic_scale": None,
            "local_phase": _PHASE_KEYS, "global_phase": _PHASE_KEYS,
        },
        "conv_3d": {"padding": None},
        "conv_layer": {"padding": None},
        "group_norm": {"sync": None},
    },
}


class ConfigWarning(UserWarning):
    """A config key is accepted for compatibility with the original code but has no effect."""


_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, ConfigWarning, stacklevel=3)


# ----------------------------------------------------------------------------- value checks

def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, numbers.Integral):
        return "integer"
    if isinstance(value, numbers.Real):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({_type_name(value)})"


def _fail(path: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{path}: expected {expected}, got {_show(value)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int(value: Any, path: str, lo: int | None = None, hi: int | None = None, what: str = "") -> int:
    if lo is not None and hi is not None:
        expected = f"an integer in {lo}..{hi}{what}"
    elif lo is not None:
        expected = f"an integer >= {lo}{what}"
    else:
        expected = f"an integer{what}"
    if not _is_int(value):
        raise _fail(path, expected, value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _fail(path, expected, value)
    return int(value)


def _number(value: Any, path: str, positive: bool = False) -> float:
    expected = "a finite number > 0" if positive else "a finite number"
    if not _is_number(value) or not math.isfinite(value) or (positive and value <= 0):
        raise _fail(path, expected, value)
    return value if _is_int(value) and positive else float(value)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "true or false", value)
    return value


def _choice(value: Any, path: str, choices: Sequence[Any]) -> Any:
    if value not in choices or isinstance(value, bool) or not isinstance(value, (str, type(None))):
        allowed = ", ".join(json.dumps(c) for c in choices)
        raise _fail(path, f"one of {allowed}", value)
    return value


def _string(value: Any, path: str, allow_empty: bool = False, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or (not allow_empty and not value):
        expected = "a string" if allow_empty else "a non-empty string"
        raise _fail(path, expected + (" or null" if allow_none else ""), value)
    return value


def normalize_dtype(value: Any, path: str = "dtype") -> str:
    """Map "torch.float16" / "fp16" / "float16" (and the bfloat16 / float32 spellings) to a jnp name."""
    if isinstance(value, str) and value.strip().lower() in _DTYPE_ALIASES:
        return _DTYPE_ALIASES[value.strip().lower()]
    raise _fail(path, "one of " + ", ".join(json.dumps(a) for a in _DTYPE_ALIASES), value)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalise a field of a frozen dataclass in __post_init__


# ----------------------------------------------------------------------------- dataclasses

@dataclass(frozen=True)
class Phase:
    """Logit biases for the local window and the global columns, by timestep (see the spec, §3).

    `local_phase` applies when `t < Phase.t`, `global_phase` when `t >= Phase.t`. Values are
    validated by the `AttnConfig` that holds the phase (which knows its key path).
    """

    t: int
    local_biase: float
    global_biase: float

    def __post_init__(self):
        for name in ("local_biase", "global_biase"):
            value = getattr(self, name)
            if _is_number(value):
                _set(self, name, float(value))


@dataclass(frozen=True)
class AttnConfig:
    """`plugin_configs.attn`: the dual-scope temporal attention. Defaults are the shipped example."""

    padding: int = 8
    top_k: int = 16
    attn_scale: float = 1.0
    token_num_scale: bool = False
    dynamic_scale: bool = True
    local_phase: Phase | None = Phase(800, 10.0, 0.0)
    global_phase: Phase | None = Phase(800, 0.0, 10.0)

    PATH: ClassVar[str] = "plugin_configs.attn"

    def __post_init__(self):
        p = self.PATH
        _set(self, "padding", _int(self.padding, f"{p}.padding", lo=0))
        _set(self, "top_k", _int(self.top_k, f"{p}.top_k", lo=0))
        _set(self, "attn_scale", _number(self.attn_scale, f"{p}.attn_scale"))
        _bool(self.token_num_scale, f"{p}.token_num_scale")
        _bool(self.dynamic_scale, f"{p}.dynamic_scale")
        for name in ("local_phase", "global_phase"):
            phase = getattr(self, name)
            if phase is None:
                continue
            if not isinstance(phase, Phase):
                raise _fail(f"{p}.{name}", "an object {t, local_biase, global_biase} or null", phase)
            _int(phase.t, f"{p}.{name}.t", lo=0)
            _number(phase.local_biase, f"{p}.{name}.local_biase")
            _number(phase.global_biase, f"{p}.{name}.global_biase")


@dataclass(frozen=True)
class ConvLayerConfig:
    """`plugin_configs.conv_layer`: halo frames of the temporal conv layers (4 = receptive field)."""

    padding: int = 4

    def __post_init__(self):
        _set(self, "padding", _int(self.padding, "plugin_configs.conv_layer.padding", lo=0))


@dataclass(frozen=True)
class GroupNormConfig:
    """`plugin_configs.group_norm`: pool temporal GroupNorm statistics over all clips (paper §ResNet sync)."""

    sync: bool = False

    def __post_init__(self):
        _bool(self.sync, "plugin_configs.group_norm.sync")


@dataclass(frozen=True)
class VideoInfinityConfig:
    """What the clip-parallel UNet needs: the plugins, the edge mode and the clip count N."""

    attn: AttnConfig = AttnConfig()
    conv_layer: ConvLayerConfig = ConvLayerConfig()
    group_norm: GroupNormConfig = GroupNormConfig()
    edge_mode: str = "exact"  # "exact" (vinf_jax) or "zeros" (released code)
    num_clips: int | None = None  # None: one clip per device

    def __post_init__(self):
        for name, cls in (("attn", AttnConfig), ("conv_layer", ConvLayerConfig), ("group_norm", GroupNormConfig)):
            if not isinstance(getattr(self, name), cls):
                raise _fail(f"plugin_configs.{name}", f"a {cls.__name__}", getattr(self, name))
        _choice(self.edge_mode, "edge_mode", EDGE_MODES)
        if self.num_clips is not None:
            _set(self, "num_clips", _int(self.num_clips, "num_clips", lo=1, what=" or null (one clip per device)"))

    def with_num_clips(self, n: int | None) -> VideoInfinityConfig:
        """A copy with `num_clips = n` (validated)."""
        return dataclasses.replace(self, num_clips=n)

    @classmethod
    def from_plugin_configs(
        cls,
        plugin_dict: Mapping[str, Any] | None,
        edge_mode: str = "exact",
        num_clips: int | None = None,
        *,
        num_frames: int | None = None,
    ) -> VideoInfinityConfig:
        """Build from the original `plugin_configs` object; with `num_frames`, also check paddings <= F."""
        plugins = _section(plugin_dict, "plugin_configs")
        _check_keys(plugins, _SCHEMA["plugin_configs"], "plugin_configs")
        attn = dict(_section(plugins.get("attn"), "plugin_configs.attn"))
        if "top_k_chunk_size" in attn:
            attn.pop("top_k_chunk_size")
            _warn_once("plugin_configs.attn.top_k_chunk_size",
                       "plugin_configs.attn.top_k_chunk_size is accepted for compatibility but has no effect")
        conv_3d = _section(plugins.get("conv_3d"), "plugin_configs.conv_3d")
        if "padding" in conv_3d:
            _warn_once("plugin_configs.conv_3d.padding",
                       "plugin_configs.conv_3d.padding is accepted for compatibility but has no effect "
                       "(the original conv_3d plugin is never mounted; see conv_layer.padding)")
        for name in ("local_phase", "global_phase"):
            if isinstance(attn.get(name), Mapping):
                default = dataclasses.asdict(getattr(AttnConfig, name))
                attn[name] = Phase(**{**default, **attn[name]})
        vi = cls(
            attn=AttnConfig(**attn),
            conv_layer=ConvLayerConfig(**_section(plugins.get("conv_layer"), "plugin_configs.conv_layer")),
            group_norm=GroupNormConfig(**_section(plugins.get("group_norm"), "plugin_configs.group_norm")),
            edge_mode=edge_mode,
            num_clips=num_clips,
        )
        if num_frames is not None:
            vi.check_num_frames(num_frames)
        return vi

    def to_plugin_configs(self) -> dict[str, Any]:
        """The inverse of `from_plugin_configs` (ignored original keys are left out)."""
        attn = dataclasses.asdict(self.attn)
        return {
            "attn": attn,
            "conv_layer": dataclasses.asdict(self.conv_layer),
            "group_norm": dataclasses.asdict(self.group_norm),
        }

    def check_num_frames(self, num_frames: int) -> None:
        """Halo / local-window paddings take frames from one neighbour clip, so they must be <= F."""
        for path, value in (("plugin_configs.attn.padding", self.attn.padding),
                            ("plugin_configs.conv_layer.padding", self.conv_layer.padding)):
            if value > num_frames:
                raise _fail(path, f"an integer in 0..{num_frames} (pipe_configs.num_frames, the frames of "
                            "one clip: padding frames come from one neighbour clip)", value)

    def shared_frames(self, num_frames: int, num_clips: int) -> tuple[int, ...]:
        """Local indices of the frames each clip shares as global context (spec §3, uniform striding).

        S = top_k // N frames per clip; if S > 0, every `max(F // S, 1)`-th frame from 0 (this can
        be more than S frames), else frame 0 alone.
        """
        assert num_frames >= 1 and num_clips >= 1, (num_frames, num_clips)
        per_clip = self.attn.top_k // num_clips
        if per_clip == 0:
            return (0,)
        return tuple(range(0, num_frames, max(num_frames // per_clip, 1)))

    def global_rows(self, num_frames: int, num_clips: int) -> int:
        """G: shared rows of all clips in clip order, cut to the first top_k."""
        return min(self.attn.top_k, num_clips * len(self.shared_frames(num_frames, num_clips)))


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

    def __post_init__(self):
        p = "pipe_configs"
        if not isinstance(self.prompts, (list, tuple)) or not self.prompts:
            raise _fail(f"{p}.prompts", "a non-empty list of strings", self.prompts)
        for i, prompt in enumerate(self.prompts):
            _string(prompt, f"{p}.prompts[{i}]", allow_empty=True)
        _set(self, "prompts", tuple(self.prompts))
        _set(self, "steps", _int(self.steps, f"{p}.steps", lo=1))
        _set(self, "guidance_scale", _number(self.guidance_scale, f"{p}.guidance_scale"))
        _set(self, "fps", _number(self.fps, f"{p}.fps", positive=True))
        _set(self, "num_frames", _int(self.num_frames, f"{p}.num_frames", lo=1))
        for name in ("height", "width"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0 or value % 8:
                raise _fail(f"{p}.{name}", "a positive multiple of 8 (pixels)", value)
            _set(self, name, int(value))
        _set(self, "export_fps", _number(self.export_fps, f"{p}.export_fps", positive=True))
        _string(self.file_name, f"{p}.file_name", allow_none=True)
        _string(self.negative_prompt, f"{p}.negative_prompt", allow_empty=True)
        _choice(self.scheduler, f"{p}.scheduler", SCHEDULERS)


@dataclass(frozen=True)
class DistributedConfig:
    """`distributed`: arguments of `jax.distributed.initialize`; unset fields come from JAX_* env vars."""

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    def __post_init__(self):
        _string(self.coordinator_address, "distributed.coordinator_address", allow_none=True)
        if self.num_processes is not None:
            _set(self, "num_processes", _int(self.num_processes, "distributed.num_processes", lo=1, what=" or null"))
        if self.process_id is not None:
            _set(self, "process_id", _int(self.process_id, "distributed.process_id", lo=0, what=" or null"))
            if self.num_processes is not None and self.process_id >= self.num_processes:
                raise _fail("distributed.process_id",
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
    dtype: str = "float32"  # "float32" | "bfloat16" | "float16" (the original spellings are accepted)
    devices: tuple[int, ...] | int | None = None  # GPU ids, a count, or None for all available
    seed: int = 123
    base_path: str = "./exp"
    save_frames: str | None = None  # None or "npy"
    distributed: DistributedConfig = DistributedConfig()
    master_port: int | None = None  # accepted for compatibility, unused
    source: str | None = field(default=None, compare=False, hash=False)  # the file it was read from
    raw: dict = field(default_factory=dict, compare=False, hash=False, repr=False)  # to_dict() for the sidecar

    def __post_init__(self):
        _string(self.model, "model")
        if not isinstance(self.pipe, PipeConfig):
            raise _fail("pipe_configs", "a PipeConfig", self.pipe)
        if not isinstance(self.video_infinity, VideoInfinityConfig):
            raise _fail("plugin_configs", "a VideoInfinityConfig", self.video_infinity)
        if not isinstance(self.distributed, DistributedConfig):
            raise _fail("distributed", "a DistributedConfig", self.distributed)
        _set(self, "dtype", normalize_dtype(self.dtype))
        _set(self, "devices", _devices(self.devices))
        _set(self, "seed", _int(self.seed, "seed", lo=0, hi=SEED_LIMIT - 1))
        _string(self.base_path, "base_path")
        _choice(self.save_frames, "save_frames", SAVE_FRAMES)
        if self.master_port is not None:
            _set(self, "master_port", _int(self.master_port, "master_port", lo=0, hi=65535, what=" or null (unused)"))
        self.video_infinity.check_num_frames(self.pipe.num_frames)


def _devices(value: Any) -> tuple[int, ...] | int | None:
    expected = "a list of distinct GPU ids (integers >= 0), a device count >= 1, or null (all devices)"
    if value is None:
        return None
    if _is_int(value):
        if value < 1:
            raise _fail("devices", expected, value)
        return int(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise _fail("devices", expected, value)
    for i, dev in enumerate(value):
        if not _is_int(dev) or dev < 0:
            raise _fail(f"devices[{i}]", "a GPU id (an integer >= 0)", dev)
    if len(set(value)) != len(value):
        dupes = sorted({d for d in value if list(value).count(d) > 1})
        raise _fail("devices", f"{expected}; ids {dupes} appear more than once", list(value))
    return tuple(int(d) for d in value)


# ----------------------------------------------------------------------------- loading

def _section(value: Any, path: str) -> Mapping[str, Any]:
    """An object of the file; absent or null means all defaults."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(path, "an object", value)
    return value


def _check_keys(data: Mapping[str, Any], schema: Mapping[str, Any], prefix: str) -> None:
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(f'{prefix}.{c}' if prefix else c for c in close)}?" if close else ""
            raise ConfigError(f"{path}: unknown key{hint} (allowed here: {', '.join(schema)})")
        if isinstance(schema[key], dict) and isinstance(value, Mapping):
            _check_keys(value, schema[key], path)


def _known_paths(schema: Mapping[str, Any] = _SCHEMA, prefix: str = "") -> list[str]:
    paths = []
    for key, sub in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        paths.append(path)
        if isinstance(sub, dict):
            paths.extend(_known_paths(sub, path))
    return paths


def _apply_override(data: dict[str, Any], item: str) -> None:
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.path=value, e.g. pipe_configs.steps=2")
    key, text = item.split("=", 1)
    key = key.strip()
    known = _known_paths()
    if key not in known:
        # Match the whole path, then the last part alone ("steps" -> "pipe_configs.steps").
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        leaves = {p.rsplit(".", 1)[-1] for p in known}
        near = difflib.get_close_matches(key.rsplit(".", 1)[-1], leaves, n=2, cutoff=0.75)
        close += [p for p in known if p.rsplit(".", 1)[-1] in near and p not in close]
        hint = f"; did you mean {' or '.join(close[:4])}?" if close else ""
        raise ConfigError(f"override {item!r}: unknown key {key}{hint}")
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    node = data
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise _fail(".".join(parts[: depth + 1]), f"an object (to set {key})", child)
        node = child
    node[parts[-1]] = value


def _read_file(path: str | os.PathLike) -> dict[str, Any]:
    name = os.fspath(path)

    def no_duplicates(pairs):
        seen = {}
        for k, v in pairs:
            if k in seen:
                raise ConfigError(f"{name}: key {k!r} appears twice in one object")
            seen[k] = v
        return seen

    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{name}: config file not found (cwd {os.getcwd()})") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a folder, expected a JSON config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{name}: cannot read config file: {e}") from None
    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{name}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a JSON object at the top level, got {_type_name(data)}")
    return data


def _check_model_folder(model: str) -> None:
    if model == TINY_RANDOM:
        return
    folder = Path(model).expanduser()
    how = (f"use model={TINY_RANDOM} (e.g. --set model={TINY_RANDOM}) or create a checkpoint folder with "
           f"`{CONVERT_COMMAND}`")
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"model: {model!r} ({folder.resolve()}) {state}; {how}")
    if not (folder / CHECKPOINT_MARKER).is_file():
        raise ConfigError(f"model: folder {model!r} ({folder.resolve()}) has no {CHECKPOINT_MARKER}, so it is "
                          f"not a vinf_jax checkpoint; {how}")


def _check_writable(path: str, key: str) -> None:
    """The folder exists and is writable, or its nearest existing parent is; creates nothing."""
    target = Path(os.path.abspath(Path(path).expanduser()))
    existing = target
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}: {path!r} cannot be a folder: {existing} exists and is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == target else f"cannot be created: {existing} is not writable"
        raise ConfigError(f"{key}: {path!r} ({target}) {what}")


def _build(data: Mapping[str, Any], source: str | None) -> GenerateConfig:
    _check_keys(data, _SCHEMA, "")
    if "model" not in data:
        raise ConfigError(
            f"model: missing required key; pass --set model={TINY_RANDOM} for a small random model, or "
            f"--set model=FOLDER with a checkpoint converted by `{CONVERT_COMMAND}`")
    pipe_dict = _section(data.get("pipe_configs"), "pipe_configs")
    if "prompts" not in pipe_dict:
        raise ConfigError('pipe_configs.prompts: missing required key; expected a non-empty list of strings, '
                          'e.g. --set \'pipe_configs.prompts=["a cat surfing"]\'')
    pipe = PipeConfig(**pipe_dict)
    video_infinity = VideoInfinityConfig.from_plugin_configs(
        data.get("plugin_configs"),
        edge_mode=data.get("edge_mode", "exact"),
        num_clips=data.get("num_clips"),
        num_frames=pipe.num_frames,
    )
    distributed = DistributedConfig(**_section(data.get("distributed"), "distributed")).with_env_defaults()
    top = {k: data[k] for k in ("dtype", "devices", "seed", "base_path", "save_frames", "master_port") if k in data}
    return GenerateConfig(model=data["model"], pipe=pipe, video_infinity=video_infinity,
                          distributed=distributed, source=source, **top)


def load_config(
    path_or_dict: str | os.PathLike | Mapping[str, Any],
    overrides: Sequence[str] = (),
    *,
    check_paths: bool = True,
) -> GenerateConfig:
    """Read and validate a config (original layout + vinf_jax keys), then apply `key.path=value` overrides.

    With `check_paths`, `model` must be "tiny-random" or a converted checkpoint folder, and
    `base_path` must be a writable folder or creatable under one (nothing is created here).
    """
    if isinstance(path_or_dict, Mapping):
        data, source = copy.deepcopy(dict(path_or_dict)), None
    elif isinstance(path_or_dict, (str, os.PathLike)):
        data, source = _read_file(path_or_dict), os.path.abspath(path_or_dict)
    else:
        raise ConfigError(f"config: expected a JSON file path or a dict, got {type(path_or_dict).__name__}")
    if isinstance(overrides, str):
        overrides = (overrides,)
    for item in overrides:
        _apply_override(data, item)
    cfg = _build(data, source)
    if check_paths:
        _check_model_folder(cfg.model)
        _check_writable(cfg.base_path, "base_path")
    return dataclasses.replace(cfg, raw=to_dict(cfg))


def to_dict(cfg: GenerateConfig) -> dict[str, Any]:
    """The resolved config in the original layout (JSON-serialisable; `load_config` reads it back)."""
    return {
        "model": cfg.model,
        "dtype": cfg.dtype,
        "devices": list(cfg.devices) if isinstance(cfg.devices, tuple) else cfg.devices,
        "seed": cfg.seed,
        "master_port": cfg.master_port,
        "base_path": cfg.base_path,
        "num_clips": cfg.video_infinity.num_clips,
        "edge_mode": cfg.video_infinity.edge_mode,
        "save_frames": cfg.save_frames,
        "distributed": dataclasses.asdict(cfg.distributed),
        "pipe_configs": {**dataclasses.asdict(cfg.pipe), "prompts": list(cfg.pipe.prompts)},
        "plugin_configs": cfg.video_infinity.to_plugin_configs(),
    }


def check_devices(cfg: GenerateConfig, num_available: int) -> int:
    """Resolve D, the devices of the clip axis, and check that the N clips split evenly over them."""
    assert num_available >= 0, num_available
    devices = cfg.devices
    if num_available < 1:
        raise ConfigError("devices: no accelerator devices are available")
    if devices is None:
        num_devices = num_available
    elif isinstance(devices, int):
        if devices > num_available:
            raise ConfigError(f"devices: {devices} devices requested but only {num_available} exist; "
                              f"use a count in 1..{num_available} or null for all")
        num_devices = devices
    else:
        missing = [d for d in devices if d >= num_available]
        if missing:
            raise ConfigError(f"devices: GPU ids {missing} do not exist; {num_available} devices are available "
                              f"(ids 0..{num_available - 1})")
        num_devices = len(devices)
    num_clips = cfg.video_infinity.num_clips
    if num_clips is not None and num_clips % num_devices:
        multiples = [num_devices * k for k in range(1, 4)]
        if num_clips > num_devices:
            below = (num_clips // num_devices) * num_devices
            multiples = sorted({below, below + num_devices, below + 2 * num_devices})
        divisors = [d for d in range(1, min(num_clips, num_available) + 1) if num_clips % d == 0]
        raise ConfigError(
            f"num_clips: {num_clips} clips cannot be split evenly over D={num_devices} devices "
            f"(num_clips % D must be 0); use num_clips in {multiples} (multiples of {num_devices}) "
            f"or a device count D in {divisors} (devices)")
    return num_devices
