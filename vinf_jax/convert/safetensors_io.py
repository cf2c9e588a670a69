"""Read diffusers / transformers weight folders into numpy, without torch and without pickle.

Accepts ``<stem>.safetensors`` or the sharded ``<stem>.safetensors.index.json`` form. The header is
parsed here (not by ``safetensors.numpy``, which cannot return bfloat16) so that a truncated file,
an unsupported dtype or an inconsistent header is reported with the file and tensor names before
any data is read; the data itself is memory-mapped.

Weights must be floating point (float16, bfloat16, float32, float64). Integer tensors are accepted
only for index buffers (``*position_ids``), which the converters skip; quantised (int8), bool and
float8 tensors are refused. Pickle formats (``.bin``, ``.ckpt``, ``.pt``, ``.pth``) are refused
unless ``allow_pickle``, which loads them with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from vinf_jax.errors import ConversionError

_FLOAT_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
_INT_DTYPES = {"I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8"}
_INDEX_BUFFERS = ("position_ids",)  # integer buffers that may sit beside the weights
_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")
_MAX_HEADER = 100 * 2**20  # safetensors' own limit


def _numpy_dtype(name: str):
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _dtype_problems(dtypes: Mapping[str, str]) -> list[str]:
    """``name (dtype)`` for every tensor that is neither a float weight nor an integer index buffer."""
    ok_float = set(_FLOAT_DTYPES.values())
    ok_int = set(_INT_DTYPES.values())
    return sorted(f"{k} ({d})" for k, d in dtypes.items()
                  if d not in ok_float and not (d in ok_int and k.endswith(_INDEX_BUFFERS)))


def _unsupported(path: Path, bad: list[str]) -> ConversionError:
    return ConversionError(f"{path}: {len(bad)} tensor(s) of unsupported dtype: {', '.join(bad)}; weights "
                           f"must be float16, bfloat16, float32 or float64 (quantised or bool weights "
                           f"cannot be converted)")


def _read_header(path: Path, size: int) -> tuple[int, dict]:
    if size < 8:
        raise ConversionError(f"{path} is truncated or not a safetensors file: only {size} bytes")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > _MAX_HEADER:
            raise ConversionError(f"{path} is not a safetensors file (header length {n} is implausible)")
        if 8 + n > size:
            raise ConversionError(f"{path} is truncated: its header needs {8 + n} bytes, the file has {size}")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except ValueError as e:
        raise ConversionError(f"{path}: safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise ConversionError(f"{path}: safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    return 8 + n, header


def _read_file(path: Path) -> dict[str, np.ndarray]:
    """All tensors of one .safetensors file, memory-mapped; every problem named before any data is read."""
    size = path.stat().st_size
    start, header = _read_header(path, size)
    dtypes, malformed, beyond = {}, [], []
    for name, info in header.items():
        try:
            code, shape, (lo, hi) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            malformed.append(name)
            continue
        dtypes[name] = _FLOAT_DTYPES.get(code) or _INT_DTYPES.get(code) or code.lower()
        if dtypes[name] in (*_FLOAT_DTYPES.values(), *_INT_DTYPES.values()):
            if hi - lo != int(np.prod(shape)) * _numpy_dtype(dtypes[name]).itemsize or lo < 0:
                malformed.append(name)
            elif start + hi > size:
                beyond.append(name)
    if malformed:
        raise ConversionError(f"{path}: corrupt safetensors header entries: {', '.join(sorted(malformed))}")
    if beyond:
        need = start + max(header[k]["data_offsets"][1] for k in beyond)
        raise ConversionError(f"{path} is truncated: {size} bytes, but {need} are needed; "
                              f"{len(beyond)} tensor(s) lie past the end: {', '.join(sorted(beyond)[:5])}"
                              + (", ..." if len(beyond) > 5 else ""))
    bad = _dtype_problems(dtypes)
    if bad:
        raise _unsupported(path, bad)
    if not header:
        return {}
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # the arrays keep it alive
    out = {}
    for name, info in header.items():
        lo, hi = info["data_offsets"]
        dtype = _numpy_dtype(dtypes[name]).newbyteorder("<")
        out[name] = np.frombuffer(buf, dtype, count=(hi - lo) // dtype.itemsize,
                                  offset=start + lo).reshape(info["shape"])
    return out


def _read_pickle(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ConversionError(f"{path}: --allow-pickle needs torch installed") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses arbitrary objects; corrupt files raise many types
        raise ConversionError(f"cannot read {path}: {type(e).__name__}: {e}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConversionError(f"{path}: expected a state dict, found {type(state).__name__}")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    bad = _dtype_problems({k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()})
    if bad:
        raise _unsupported(path, bad)
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in tensors.items()}


def _read_index(folder: Path, index: Path) -> dict[str, np.ndarray]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConversionError(f"{index}: not a safetensors index ({type(e).__name__}: {e})") from None
    missing = [str(folder / s) for s in shards if not (folder / s).is_file()]
    if missing:
        raise ConversionError(f"{index}: shard(s) missing: {', '.join(missing)}")
    tensors: dict[str, np.ndarray] = {}
    for shard in shards:
        tensors.update(_read_file(folder / shard))
    absent = sorted(set(weight_map) - set(tensors))
    if absent:
        raise ConversionError(f"{index}: keys listed in the index but absent from the shards: {', '.join(absent)}")
    return tensors


def read_weights(folder: str | Path, stems: str | Sequence[str], *, allow_pickle: bool = False
                 ) -> dict[str, np.ndarray]:
    """All tensors of ``folder/<stem>.safetensors`` (or its shards) as numpy arrays.

    ``stems`` are tried in order (transformers writes ``model``, and ``pytorch_model.bin`` as pickle).
    """
    folder = Path(folder)
    stems = [stems] if isinstance(stems, str) else list(stems)
    if not folder.is_dir():
        raise ConversionError(f"folder {folder} does not exist")
    for stem in stems:
        if (folder / f"{stem}.safetensors").is_file():
            return _read_file(folder / f"{stem}.safetensors")
        if (folder / f"{stem}.safetensors.index.json").is_file():
            return _read_index(folder, folder / f"{stem}.safetensors.index.json")
    pickles = sorted({p for stem in stems for p in folder.glob(f"{stem}*") if p.suffix in _PICKLE_SUFFIXES})
    if pickles and allow_pickle:
        out: dict[str, np.ndarray] = {}
        for p in pickles:
            out.update(_read_pickle(p))
        return out
    if pickles:
        raise ConversionError(f"{folder}: only pickle weights found ({', '.join(p.name for p in pickles)}); "
                              "pickle can execute code, so they are refused. Re-save them as safetensors, "
                              "or pass --allow-pickle to load them with torch.load(weights_only=True)")
    names = " or ".join(f"{s}.safetensors" for s in stems)
    raise ConversionError(f"{folder}: no {names} (or sharded index) found")
