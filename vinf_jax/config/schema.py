"""The key tree of the original Video-Infinity JSON file plus the vinf_jax keys, and the walks over it
(unknown keys with a "did you mean", the list of overridable paths)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from vinf_jax.config.values import fail
from vinf_jax.errors import ConfigError

# A dict is a section (an object in the JSON), None a leaf value.
PHASE_KEYS = {"t": None, "local_biase": None, "global_biase": None}
SCHEMA: dict[str, Any] = {
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
        "lcm_origin_steps": None, "motion_gs": None, "motion_percentage": None,
    },
    "plugin_configs": {
        "attn": {
            "padding": None, "top_k": None, "top_k_chunk_size": None, "attn_scale": None,
            "token_num_scale": None, "dynamic_scale": None, "exchange": None,
            "local_phase": PHASE_KEYS, "global_phase": PHASE_KEYS,
        },
        "conv_3d": {"padding": None},
        "conv_layer": {"padding": None},
        "group_norm": {"sync": None},
    },
}


def section(value: Any, path: str) -> Mapping[str, Any]:
    """An object of the file; absent or null means all defaults."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise fail(path, "an object", value)
    return value


def check_keys(data: Mapping[str, Any], schema: Mapping[str, Any], prefix: str) -> None:
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(f'{prefix}.{c}' if prefix else c for c in close)}?" if close else ""
            raise ConfigError(f"{path}: unknown key{hint} (allowed here: {', '.join(schema)})")
        if isinstance(schema[key], dict) and isinstance(value, Mapping):
            check_keys(value, schema[key], path)


def known_paths(schema: Mapping[str, Any] = SCHEMA, prefix: str = "") -> list[str]:
    paths = []
    for key, sub in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        paths.append(path)
        if isinstance(sub, dict):
            paths.extend(known_paths(sub, path))
    return paths

