"""Read diffusers / transformers weight folders into numpy, without torch and without pickle.

Accepts ``<stem>.safetensors`` or the sharded ``<stem>.safetensors.index.json`` form, in float32,
float16 or bfloat16 (bfloat16 via ml_dtypes). Pickle formats (``.bin``, ``.ckpt``, ``.pt``) are
refused unless ``allow_pickle``, which loads them with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vinf_jax.errors import ConversionError

_FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")


def _read_file(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises SafetensorError / OSError for truncated or corrupt files
        raise ConversionError(f"cannot read {path}: {type(e).__name__}: {e}") from None
    bad = sorted(f"{k} ({v.dtype})" for k, v in tensors.items() if v.dtype.name not in _FLOAT_DTYPES
                 and not np.issubdtype(v.dtype, np.integer))
    if bad:
        raise ConversionError(f"{path}: unsupported tensor dtype(s): {', '.join(bad)}; "
                              f"expected one of {', '.join(_FLOAT_DTYPES)}")
    return tensors


def _read_pickle(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ConversionError(f"{path}: --allow-pickle needs torch installed") from None
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {k: v.float().numpy() for k, v in state.items() if hasattr(v, "numpy")}


def read_weights(folder: str | Path, stem: str, *, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """All tensors of ``folder/<stem>.safetensors`` (or its shards) as numpy arrays."""
    folder = Path(folder)
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return _read_file(single)
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConversionError(f"{index}: not a safetensors index ({type(e).__name__}: {e})") from None
        tensors: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise ConversionError(f"{index}: shard {folder / shard} is missing")
            tensors.update(_read_file(folder / shard))
        absent = sorted(set(weight_map) - set(tensors))
        if absent:
            raise ConversionError(f"{index}: keys listed in the index but absent from the shards: {', '.join(absent)}")
        return tensors
    pickles = sorted(p for p in folder.glob(f"{stem}*") if p.suffix in _PICKLE_SUFFIXES) if folder.is_dir() else []
    if pickles and allow_pickle:
        out: dict[str, np.ndarray] = {}
        for p in pickles:
            out.update(_read_pickle(p))
        return out
    if pickles:
        raise ConversionError(f"{folder}: only pickle weights found ({', '.join(p.name for p in pickles)}); "
                              "pickle can execute code, so they are refused. Re-save them as safetensors, "
                              "or pass --allow-pickle to load them with torch.load(weights_only=True)")
    raise ConversionError(f"{folder}: no {stem}.safetensors (or sharded index) found")
