"""A deliberately plain, unsharded oracle of docs/method.md on the whole T = N*F sequence.

It replaces the two temporal layer types' ``__call__`` (via monkeypatch) with explicit per-clip
loops: variable-length windows, explicit key lists and masks. It shares only the weights (and the
frame-local sub-layers: Linear, LayerNorm, feed-forward, already checked against diffusers) with
``vinf_jax.parallel``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class OracleSpec:
    frames: int  # T = N * F (the UNet checks this)
    num_clips: int
    vi: object  # VideoInfinityConfig
    t: float
    clips: int = 1  # unused by the oracle; the UNet only reads `frames`

    @property
    def f(self):
        return self.frames // self.num_clips


def shared_indices(f, n, top_k):
    s = top_k // n
    stride = max(f // s, 1) if s > 0 else None
    idx = list(range(0, f, stride)) if stride else [0]
    return idx, min(top_k, n * len(idx))


def _gn_stats(tensors, groups):
    """Mean/var per (batch, group) pooled over a list of (B, L, H, W, C) tensors."""
    gs = [t.reshape(t.shape[:4] + (groups, -1)) for t in tensors]
    count = sum(np.prod(g.shape[1:4]) * g.shape[5] for g in gs)
    mean = sum(g.sum(axis=(1, 2, 3, 5)) for g in gs) / count
    var = sum(((g - mean[:, None, None, None, :, None]) ** 2).sum(axis=(1, 2, 3, 5)) for g in gs) / count
    return mean, var


def _gn_apply(t, norm, mean, var):
    g = t.reshape(t.shape[:4] + (norm.num_groups, -1))
    y = (g - mean[:, None, None, None, :, None]) / jnp.sqrt(var[:, None, None, None, :, None] + norm.eps)
    return y.reshape(t.shape) * norm.scale[...] + norm.bias[...]


def _group_norm_all(tensors, norm, sync):
    if sync:
        m, v = _gn_stats(tensors, norm.num_groups)
        return [_gn_apply(t, norm, m, v) for t in tensors]
    return [_gn_apply(t, norm, *_gn_stats([t], norm.num_groups)) for t in tensors]


def _conv_time(y, conv):
    """Conv3d((3,1,1), padding (1,0,0)) written out: out[l] = sum_k ypad[l+k] @ W[k] + b."""
    w = conv.kernel[...][:, 0, 0]  # (3, Cin, Cout)
    ypad = jnp.pad(y, ((0, 0), (1, 1), (0, 0), (0, 0), (0, 0)))
    L = y.shape[1]
    return sum(jnp.einsum("blhwc,cd->blhwd", ypad[:, k:k + L], w[k]) for k in range(3)) + conv.bias[...]


def oracle_temporal_conv(layer, x, spec: OracleSpec):
    vi, n, f, T = spec.vi, spec.num_clips, spec.f, spec.frames
    bt, h, w, c = x.shape
    v = x.reshape(bt // T, T, h, w, c)
    pc = vi.conv_layer.padding
    windows, starts = [], []
    for ci in range(n):
        lo, hi = ci * f - pc, (ci + 1) * f + pc
        core = v[:, max(lo, 0):min(hi, T)]
        if vi.edge_mode == "exact":
            windows.append(core)
            starts.append(ci * f - max(lo, 0))
        else:
            zl, zr = max(0, -lo), max(0, hi - T)
            windows.append(jnp.pad(core, ((0, 0), (zl, zr), (0, 0), (0, 0), (0, 0))))
            starts.append(pc)
    ys = windows
    for stage in (layer.conv1, layer.conv2, layer.conv3, layer.conv4):
        ys = _group_norm_all(ys, stage.norm, vi.group_norm.sync)
        ys = [_conv_time(jax.nn.silu(y), stage.conv) for y in ys]
    out = jnp.concatenate([y[:, s:s + f] for y, s in zip(ys, starts)], axis=1)
    return x + out.reshape(bt, h, w, c)


def oracle_attention(attn, z, heads, spec: OracleSpec):
    """Dual-scope attention per clip with explicit key lists; z (b, T, C)."""
    vi, n, f, T = spec.vi, spec.num_clips, spec.f, spec.frames
    a = vi.attn
    q, k, v = attn.to_q(z), attn.to_k(z), attn.to_v(z)
    b = z.shape[0]
    d = q.shape[-1] // heads
    q, k, v = (t.reshape(b, T, heads, d) for t in (q, k, v))
    idx, G = shared_indices(f, n, a.top_k)
    gk = jnp.concatenate([k[:, ci * f + i][:, None] for ci in range(n) for i in idx], axis=1)[:, :G]
    gv = jnp.concatenate([v[:, ci * f + i][:, None] for ci in range(n) for i in idx], axis=1)[:, :G]
    lb = gb = 0.0
    if a.dynamic_scale:
        if a.local_phase is not None and spec.t < a.local_phase.t:
            lb += a.local_phase.local_biase
            gb += a.local_phase.global_biase
        if a.global_phase is not None and spec.t >= a.global_phase.t:
            lb += a.global_phase.local_biase
            gb += a.global_phase.global_biase
    outs = []
    P = a.padding
    for ci in range(n):
        for i in range(f):
            qi = q[:, ci * f + i]  # (b, heads, d)
            keys, vals, biases = [], [], []
            for m in range(f + 2 * P):
                if not (i <= m <= i + 2 * P):
                    continue
                g = ci * f - P + m
                if 0 <= g < T:
                    keys.append(k[:, g]); vals.append(v[:, g])
                elif vi.edge_mode == "zeros":
                    keys.append(jnp.zeros_like(k[:, 0])); vals.append(jnp.zeros_like(v[:, 0]))
                else:
                    continue
                biases.append(lb)
            for r in range(G):
                keys.append(gk[:, r]); vals.append(gv[:, r]); biases.append(gb)
            K = jnp.stack(keys, 1); V = jnp.stack(vals, 1)  # (b, n_i, heads, d)
            s = a.attn_scale / math.sqrt(d)
            if a.token_num_scale:
                s = s * math.log(len(keys)) / math.log(16)
            logits = jnp.einsum("bhd,bkhd->bhk", qi, K) * s + jnp.asarray(biases)
            p = jax.nn.softmax(logits, axis=-1)
            outs.append(jnp.einsum("bhk,bkhd->bhd", p, V))
    out = jnp.stack(outs, axis=1).reshape(b, T, heads * d)
    return attn.to_out(out)


def oracle_transformer_temporal(layer, x, spec: OracleSpec):
    n, f, T = spec.num_clips, spec.f, spec.frames
    bt, h, w, c = x.shape
    v = x.reshape(bt // T, T, h, w, c)
    clips = [v[:, ci * f:(ci + 1) * f] for ci in range(n)]
    normed = jnp.concatenate(_group_norm_all(clips, layer.norm, spec.vi.group_norm.sync), axis=1)
    z = layer.proj_in(normed.transpose(0, 2, 3, 1, 4).reshape(-1, T, c))
    for blk in layer.transformer_blocks:
        z = z + oracle_attention(blk.attn1, blk.norm1(z), layer.heads, spec)
        z = z + oracle_attention(blk.attn2, blk.norm2(z), layer.heads, spec)
        z = z + blk.ff(blk.norm3(z))
    y = layer.proj_out(z).reshape(bt // T, h, w, T, c).transpose(0, 3, 1, 2, 4)
    return x + y.reshape(bt, h, w, c)


def patch_oracle(monkeypatch):
    from vinf_jax.models import temporal

    monkeypatch.setattr(temporal.TemporalConvLayer, "__call__", oracle_temporal_conv)
    monkeypatch.setattr(temporal.TransformerTemporal, "__call__", oracle_transformer_temporal)


def random_params(abstract, seed=0):
    """Every leaf random: kernels ~ N(0, 1/fan_in), scales ~ 1 + N(0, .1), biases ~ N(0, .05)."""
    from vinf_jax.random_init import random_params as draw

    return draw(abstract, seed, scale_std=0.1, bias_std=0.05)
