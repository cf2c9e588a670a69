"""Random parameters for models without weights: the tiny-random model, tests and benchmarks.

One rule for every leaf, by its name: kernels ~ N(0, 1/fan_in) and embeddings ~ N(0, 1), so
activations stay O(1) through the network (bf16 neither overflows nor turns NaN); norm scales near
one; small biases. Every leaf is random (none zero), so parity tests exercise every parameter.
"""

from __future__ import annotations

import numpy as np


def scale_leaf(name: str, shape: tuple, z, *, scale_std: float = 0.05, bias_std: float = 0.02):
    """Standard normal draws ``z`` (numpy or jax) of a leaf called ``name`` -> its random value."""
    if name == "kernel" and len(shape) >= 2:
        return z / np.sqrt(max(int(np.prod(shape[:-1])), 1))
    if name == "embedding":
        return z
    if name == "scale":
        return 1 + scale_std * z
    return bias_std * z


def random_params(abstract: dict, seed: int, *, scale_std: float = 0.05, bias_std: float = 0.02) -> dict:
    """A float32 numpy tree shaped like ``abstract`` (a pure dict of ShapeDtypeStructs), from ``seed``.
    Leaves are drawn in sorted key order, so the same tree and seed always give the same values."""
    rng = np.random.default_rng(seed)

    def fill(tree, name=""):
        if isinstance(tree, dict):
            return {k: fill(v, str(k)) for k, v in sorted(tree.items(), key=lambda kv: str(kv[0]))}
        shape = tuple(tree.shape)
        z = rng.standard_normal(shape)
        return np.asarray(scale_leaf(name, shape, z, scale_std=scale_std, bias_std=bias_std), np.float32)

    return fill(abstract)
