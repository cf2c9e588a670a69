"""Reading a config: the JSON file (or a dict), `key.path=value` overrides, required keys, and the
checks of paths on this machine (model folder, writable base_path). `to_dict` is the inverse."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vinf_jax.config.run import DistributedConfig, GenerateConfig, PipeConfig
from vinf_jax.config.schema import SCHEMA, check_keys, known_paths, section
from vinf_jax.config.values import fail, type_name
from vinf_jax.config.video_infinity import VideoInfinityConfig
from vinf_jax.errors import ConfigError

TINY_RANDOM = "tiny-random"
TINY_DEMO = "tiny-demo"  # the trained demo model shipped in the package (vinf_jax/demo), converted on first use
CHECKPOINT_MARKER = "vinf_jax_checkpoint.json"
CONVERT_COMMAND = "python -m convert.videocrafter2 --unet ... --base ... --out ..."


def _apply_override(data: dict[str, Any], item: str) -> None:
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.path=value, e.g. pipe_configs.steps=2")
    key, text = item.split("=", 1)
    key = key.strip()
    known = known_paths()
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
            raise fail(".".join(parts[: depth + 1]), f"an object (to set {key})", child)
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
        raise ConfigError(f"{name}: expected a JSON object at the top level, got {type_name(data)}")
    return data


def _check_model_folder(model: str) -> None:
    if model in (TINY_RANDOM, TINY_DEMO):
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
    check_keys(data, SCHEMA, "")
    if "model" not in data:
        raise ConfigError(
            f"model: missing required key; pass --set model={TINY_RANDOM} for a small random model, or "
            f"--set model=FOLDER with a checkpoint converted by `{CONVERT_COMMAND}`")
    pipe_dict = section(data.get("pipe_configs"), "pipe_configs")
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
    distributed = DistributedConfig(**section(data.get("distributed"), "distributed")).with_env_defaults()
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
