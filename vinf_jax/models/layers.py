"""Frame-local building blocks shared by the UNet, VAE and text encoder (channels-last).

Module attribute names follow diffusers / transformers so that ``convert.mapping`` can name each
parameter's PyTorch key. Norm statistics are computed in float32 whatever the compute dtype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx




class GroupNorm(nnx.Module):
    """torch.nn.GroupNorm on a channels-last tensor (then SiLU if ``silu``); statistics over every axis
    but the first.

    ``x`` is (batch, ..., channels). Statistics are taken per batch element and group over all
    middle axes and the group's channels, as torch does for (N, C, *) inputs.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, *, silu: bool = False,
                 rngs: nnx.Rngs | None = None):
        assert num_channels % num_groups == 0, (num_channels, num_groups)
        # silu: the SiLU that follows this norm in VideoCrafter2 (resnets, temporal convs, conv_norm_out)
        # is applied in float32 before the one rounding to the compute dtype (two roundings in half
        # precision otherwise, three with XLA's own half-precision SiLU); no parameter changes
        self.num_groups, self.eps, self.silu = num_groups, eps, silu
        self.scale = nnx.Param(jnp.ones((num_channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_channels,), jnp.float32))

    def normalize(self, x: jax.Array, mean: jax.Array, var: jax.Array) -> jax.Array:
        """Apply given group statistics (broadcastable to ``grouped(x)``) and the affine map."""
        g = grouped(x, self.num_groups)
        y = (g - mean) * jax.lax.rsqrt(var + self.eps)
        y = y.reshape(x.shape) * self.scale[...] + self.bias[...]
        return (jax.nn.silu(y) if self.silu else y).astype(x.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        g = grouped(x, self.num_groups)
        axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)
        mean = g.mean(axis=axes, keepdims=True)
        var = jnp.square(g - mean).mean(axis=axes, keepdims=True)
        return self.normalize(x, mean, var)


def grouped(x: jax.Array, num_groups: int) -> jax.Array:
    """(..., C) -> (..., G, C//G) in float32."""
    return x.astype(jnp.float32).reshape(x.shape[:-1] + (num_groups, x.shape[-1] // num_groups))


class LayerNorm(nnx.Module):
    """torch.nn.LayerNorm over the last axis, statistics in float32."""

    def __init__(self, dim: int, eps: float = 1e-5, *, rngs: nnx.Rngs | None = None):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.astype(jnp.float32)
        mean = h.mean(-1, keepdims=True)
        var = jnp.square(h - mean).mean(-1, keepdims=True)
        y = (h - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]
        return y.astype(x.dtype)


def linear(din: int, dout: int, rngs: nnx.Rngs, bias: bool = True, dtype=None) -> nnx.Linear:
    return nnx.Linear(din, dout, use_bias=bias, dtype=dtype, rngs=rngs)


def conv2d(cin: int, cout: int, k: int, rngs: nnx.Rngs, stride: int = 1, padding: int | None = None, dtype=None) -> nnx.Conv:
    """torch.nn.Conv2d(cin, cout, k, stride, padding) on NHWC (default padding keeps the size)."""
    p = (k - 1) // 2 if padding is None else padding
    return nnx.Conv(cin, cout, (k, k), strides=stride, padding=((p, p), (p, p)), dtype=dtype, rngs=rngs)


def timestep_embedding(t: jax.Array, dim: int, flip_sin_to_cos: bool = True, shift: float = 0.0,
                       max_period: float = 10000.0) -> jax.Array:
    """diffusers ``get_timestep_embedding``: (B,) -> (B, dim) sinusoids in float32."""
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - shift)
    args = jnp.asarray(t, jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if flip_sin_to_cos:
        emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def silu(x: jax.Array) -> jax.Array:
    """SiLU computed in float32 and rounded once to ``x``'s dtype. XLA evaluates a half-precision
    ``x * sigmoid(x)`` with a rounding in between: 37 % of float16 results were one unit off (CPU)."""
    return jax.nn.silu(x.astype(jnp.float32)).astype(x.dtype)


def geglu(h: jax.Array, gate: jax.Array) -> jax.Array:
    """``h * gelu(gate)`` (exact erf GELU) in float32, rounded once to ``h``'s dtype (as :func:`silu`)."""
    return (h.astype(jnp.float32) * jax.nn.gelu(gate.astype(jnp.float32), approximate=False)).astype(h.dtype)


def guidance_embedding(w: jax.Array, dim: int) -> jax.Array:
    """T2V-Turbo's ``get_w_embedding`` (VDM's): (B,) scales -> (B, dim), ``[sin, cos]`` of ``1000 w`` times
    ``exp(-ln(10000) i / (dim/2 - 1))``; note the sin-first order and the ``- 1``, unlike the timestep embedding."""
    half = dim // 2
    # the frequencies as torch computes them: float32 log(10000) / (half - 1), float32 exponents, then exp
    # correctly rounded to float32 (float64 exp, rounded once: torch's float32 exp agrees on 125 of 128)
    scale = np.float32(np.float32(math.log(10000.0)) / np.float32(half - 1))
    freqs = np.exp((np.arange(half, dtype=np.float32) * -scale).astype(np.float64)).astype(np.float32)
    args = (jnp.asarray(w, jnp.float32) * 1000.0)[:, None] * jnp.asarray(freqs)[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class TimestepEmbedding(nnx.Module):
    """diffusers ``TimestepEmbedding``: linear_1 -> SiLU -> linear_2."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs, dtype=None):
        self.linear_1 = linear(din, dout, rngs, dtype=dtype)
        self.linear_2 = linear(dout, dout, rngs, dtype=dtype)

    def __call__(self, x):
        return self.linear_2(silu(self.linear_1(x)))


def logits_einsum(spec: str, q: jax.Array, k: jax.Array) -> jax.Array:
    """Attention logits ``einsum(spec, q, k)`` accumulated and returned in float32.

    XLA:CPU has no float16 x float16 -> float32 dot, so there float16 operands are widened first: a
    product of two float16 numbers is exact in float32, so the result is the same as the GPU's."""
    if q.dtype == jnp.float16 and jax.default_backend() == "cpu":
        q, k = q.astype(jnp.float32), k.astype(jnp.float32)
    return jnp.einsum(spec, q, k, preferred_element_type=jnp.float32)


def probs_times_values(spec: str, probs: jax.Array, v: jax.Array) -> jax.Array:
    """``einsum(spec, probs, v)`` in float32, returned in v's dtype: probabilities are the tensor half
    precision rounds worst (many small values in [0, 1]); flash kernels keep them in float32 too."""
    return jnp.einsum(spec, probs, v.astype(jnp.float32)).astype(v.dtype)


def dot_product_attention(q, k, v, scale: float, bias=None):
    """Softmax attention, (..., Lq, H, D) x (..., Lk, H, D) -> (..., Lq, H, D); softmax in float32."""
    logits = logits_einsum("...qhd,...khd->...hqk", q, k) * scale
    if bias is not None:
        logits = logits + bias
    probs = jax.nn.softmax(logits, axis=-1)
    return probs_times_values("...hqk,...khd->...qhd", probs, v)
