"""Map PyTorch state dicts (diffusers / transformers key layout) onto vinf_jax Flax parameters.

The Flax modules mirror the PyTorch attribute names, so a Flax parameter path such as
``down_blocks.0.resnets.1.conv1.kernel`` names its PyTorch tensor (``...conv1.weight``) after a
per-model ``rename`` of the few places where PyTorch wraps layers in ``nn.Sequential``. Only the
layout differs: Linear weights are transposed, conv weights move to channels-last.

Everything here is numpy: conversion needs no torch and allocates nothing on an accelerator.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from vinf_jax.errors import ConversionError

_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}


def flatten_pure(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """Nested dict (from ``nnx.to_pure_dict``) -> {"a.0.b.kernel": leaf}."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_pure(value, path + "."))
        else:
            out[path] = value
    return out


def unflatten_pure(flat: Mapping[str, object]) -> dict:
    """Inverse of :func:`flatten_pure`; integer path parts become int keys (nnx.List indices)."""
    root: dict = {}
    for path, value in flat.items():
        node = root
        parts = [int(p) if p.isdigit() else p for p in path.split(".")]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


def to_flax_layout(leaf: str, tensor: np.ndarray) -> np.ndarray:
    """PyTorch tensor -> the layout of the Flax leaf named ``leaf``."""
    if leaf != "kernel":
        return tensor
    if tensor.ndim == 2:  # Linear (out, in) -> (in, out)
        return tensor.T
    if tensor.ndim >= 3:  # ConvNd (out, in, *k) -> (*k, in, out)
        return np.transpose(tensor, tuple(range(2, tensor.ndim)) + (1, 0))
    return tensor


def torch_key(flax_path: str, rename: Callable[[str], str] | None = None) -> str:
    module, _, leaf = flax_path.rpartition(".")
    key = f"{module}.{_LEAF_TO_TORCH.get(leaf, leaf)}" if module else _LEAF_TO_TORCH.get(leaf, leaf)
    return rename(key) if rename else key


def params_from_torch(
    abstract: Mapping,
    tensors: Mapping[str, np.ndarray],
    *,
    rename: Callable[[str], str] | None = None,
    what: str = "model",
    ignore: Callable[[str], bool] | None = None,
) -> dict:
    """Fill the abstract parameter tree ``abstract`` (shapes/dtypes) from ``tensors``.

    Returns a nested pure dict of float32 numpy arrays. Collects *every* missing key, unexpected
    key, shape mismatch and non-finite tensor and raises one :class:`ConversionError` naming them.
    ``ignore(key)`` marks PyTorch keys that are known to carry nothing we need (buffers).
    """
    flat_abstract = flatten_pure(abstract)
    used, missing, mismatched, nonfinite = set(), [], [], []
    out = {}
    for path, spec in flat_abstract.items():
        key = torch_key(path, rename)
        if key not in tensors:
            missing.append(key)
            continue
        used.add(key)
        leaf = path.rpartition(".")[2]
        value = to_flax_layout(leaf, np.asarray(tensors[key]))
        if tuple(value.shape) != tuple(spec.shape):
            mismatched.append(f"{key}: checkpoint {tuple(tensors[key].shape)} -> {tuple(value.shape)}, model expects {tuple(spec.shape)}")
            continue
        value = value.astype(np.float32)
        if not np.isfinite(value).all():
            nonfinite.append(key)
        out[path] = np.ascontiguousarray(value)
    unexpected = sorted(k for k in tensors if k not in used and not (ignore and ignore(k)))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): " + ", ".join(sorted(missing)))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected))
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): " + "; ".join(mismatched))
    if nonfinite:
        problems.append(f"{len(nonfinite)} tensor(s) with NaN or inf: " + ", ".join(sorted(nonfinite)))
    if problems:
        raise ConversionError(f"cannot convert {what}:\n  " + "\n  ".join(problems))
    return unflatten_pure(out)
