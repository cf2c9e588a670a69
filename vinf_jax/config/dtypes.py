"""One dtype vocabulary for the CLI config, ``from_pretrained`` and ``load_unet``.

Accepted: the names of the original configs and their short forms ("torch.float16", "fp16",
"float16", the bfloat16 and float32 spellings), "auto", and numpy / jax / ml_dtypes dtype objects
or scalar types (``np.float32``, ``jnp.bfloat16``, ``np.dtype("float16")``). Anything else is a
ConfigError naming the value. No numpy import here: objects are recognised by their dtype name.

"auto" (the default everywhere) computes float16 on GPUs (the released Video-Infinity code's precision:
on Ampere and Hopper float16 and bfloat16 run at the same tensor-core rate, and float16 keeps 11
significand bits to bfloat16's 8), bfloat16 on TPUs (their native half precision) and float32 on CPUs.
A name is honoured on every platform: "float16" computes float16, "bfloat16" bfloat16, "float32"
float32. Whatever the dtype, norm statistics, attention logits and softmax, the noise prediction's
last conv, guidance, the solver and the VAE's scaling stay float32 (docs/method.md, "Precision").
"""

from __future__ import annotations

import json
from typing import Any

from vinf_jax.config.values import fail

DEFAULT_DTYPE = "auto"
DTYPES = ("auto", "float32", "bfloat16", "float16")
_ALIASES = {
    "auto": "auto",
    "torch.float16": "float16", "fp16": "float16", "float16": "float16", "half": "float16",
    "torch.bfloat16": "bfloat16", "bf16": "bfloat16", "bfloat16": "bfloat16",
    "torch.float32": "float32", "fp32": "float32", "float32": "float32", "float": "float32",
}


def _object_name(value: Any) -> str | None:
    """The dtype name of a numpy/jax/ml_dtypes dtype or scalar type, without importing numpy."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return None
    if all(hasattr(value, a) for a in ("name", "kind", "itemsize")):  # np.dtype("float16"), jnp.dtype(...)
        return str(value.name)
    if isinstance(value, type):  # scalar types: np.float32, jnp.bfloat16, ml_dtypes.bfloat16
        return value.__name__
    return None


def normalize_dtype(value: Any, path: str = "dtype") -> str:
    """One of DTYPES for any accepted spelling or dtype object; ConfigError otherwise."""
    name = value.strip().lower() if isinstance(value, str) else _object_name(value)
    if name in _ALIASES:
        return _ALIASES[name]
    spellings = ", ".join(json.dumps(a) for a in _ALIASES)
    raise fail(path, f"one of {spellings}, or a numpy/jax float32/bfloat16/float16 dtype", value)


AUTO_DTYPE = {"gpu": "float16", "cuda": "float16", "rocm": "float16", "tpu": "bfloat16", "cpu": "float32"}


def compute_dtype(value: Any, platform: str, path: str = "dtype") -> str:
    """The dtype the model computes in on ``platform`` ("cpu", "gpu", "tpu", ...) for a config value."""
    name = normalize_dtype(value, path)
    if name == "auto":
        return AUTO_DTYPE.get(platform, "float32")
    return name

