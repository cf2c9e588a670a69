"""The temporal layers of the UNet and the one small interface through which they see other frames.

Every layer of the UNet is frame-local except three: the temporal conv (``temp_convs``), the
temporal attention (``transformer_in`` / ``temp_attentions``) and their group norms. These call a
``TemporalOps`` object for everything that involves frames beyond the current one:

- ``conv_window``: the frames a temporal conv runs on for each clip (with halos, and which are real),
- ``group_norm``: statistics of a group norm over a clip's window (or pooled over all clips),
- ``attention``: which keys/values each query frame sees (local window, global context, biases);
  it gets the attention's input rows and its projections, so an implementation may exchange
  either the input rows or the projected k and v between devices.

``VanillaTemporal`` treats the local frames as one clip and reproduces diffusers exactly.
``vinf_jax.parallel.context.ClipParallelTemporal`` is the Video-Infinity version (halos by
``ppermute``, global context by ``all_gather``) and is swapped in without touching the UNet.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from vinf_jax.models.blocks import BasicTransformerBlock
from vinf_jax.models.layers import GroupNorm, dot_product_attention, linear


@dataclasses.dataclass(frozen=True)
class Window:
    """Per-clip temporal-conv windows.

    x: (B, clips, L, H, W, C) window of each clip; valid: None (every frame real) or a bool array
    broadcastable to (clips, L) marking the frames that exist in the video; start: offset of the
    clip's own first frame inside the window.
    """

    x: jax.Array
    valid: jax.Array | None
    start: int


class TemporalOps(Protocol):
    frames: int  # frames of the local block (all its clips), static
    clips: int  # clips in the local block, static

    def conv_window(self, x: jax.Array) -> Window: ...

    def group_norm(self, norm: GroupNorm, x: jax.Array, valid: jax.Array | None) -> jax.Array: ...

    def attention(self, z: jax.Array, q_of, kv_of) -> jax.Array:
        """z (b, T, C) rows of every frame -> (b, T, heads, d). ``q_of(rows)`` -> (..., heads, d) and
        ``kv_of(rows)`` -> (k, v) project rows of shape (..., C)."""
        ...


@dataclasses.dataclass(frozen=True)
class VanillaTemporal:
    """One clip made of all local frames: the unmodified diffusers temporal layers."""

    frames: int
    clips: int = 1

    def conv_window(self, x):
        return Window(x[:, None], None, 0)

    def group_norm(self, norm, x, valid):
        assert valid is None
        return norm(x.reshape((-1,) + x.shape[2:])).reshape(x.shape)

    def attention(self, z, q_of, kv_of):
        q = q_of(z)
        k, v = kv_of(z)
        return dot_product_attention(q, k, v, scale=q.shape[-1] ** -0.5)


class TemporalConvStage(nnx.Module):
    """GroupNorm -> SiLU -> Conv3d((3,1,1), one zero frame of padding); diffusers ``convK.{0,2|3}``."""

    def __init__(self, cin: int, cout: int, groups: int, *, rngs: nnx.Rngs):
        self.norm = GroupNorm(groups, cin, silu=True)
        self.conv = nnx.Conv(cin, cout, (3, 1, 1), padding=((1, 1), (0, 0), (0, 0)), rngs=rngs)


class TemporalConvLayer(nnx.Module):
    """diffusers ``TemporalConvLayer``: ``h + conv4(conv3(conv2(conv1(h))))`` over each clip's window."""

    def __init__(self, channels: int, groups: int, *, rngs: nnx.Rngs):
        self.conv1 = TemporalConvStage(channels, channels, groups, rngs=rngs)
        self.conv2 = TemporalConvStage(channels, channels, groups, rngs=rngs)
        self.conv3 = TemporalConvStage(channels, channels, groups, rngs=rngs)
        self.conv4 = TemporalConvStage(channels, channels, groups, rngs=rngs)

    def __call__(self, x: jax.Array, ops: TemporalOps) -> jax.Array:
        bt, h, w, c = x.shape
        b, frames = bt // ops.frames, ops.frames // ops.clips
        win = ops.conv_window(x.reshape(b, ops.frames, h, w, c))
        y = win.x
        nclips, length = y.shape[1], y.shape[2]
        for stage in (self.conv1, self.conv2, self.conv3, self.conv4):
            y = ops.group_norm(stage.norm, y, win.valid)  # norm -> SiLU
            if win.valid is not None:  # frames outside the video act as the conv's zero padding
                y = jnp.where(win.valid[None, :, :, None, None, None], y, 0).astype(y.dtype)
            y = stage.conv(y.reshape((b * nclips, length, h, w, c))).reshape(y.shape)
        y = y[:, :, win.start:win.start + frames]
        return x + y.reshape(bt, h, w, c)


class TransformerTemporal(nnx.Module):
    """diffusers ``TransformerTemporalModel``: GroupNorm over each clip, attention over frames."""

    def __init__(self, channels: int, heads: int, dim_head: int, groups: int, *, rngs: nnx.Rngs):
        inner = heads * dim_head
        self.heads = heads
        self.norm = GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = linear(channels, inner, rngs)
        self.transformer_blocks = nnx.List([BasicTransformerBlock(inner, heads, dim_head, None, rngs=rngs)])
        self.proj_out = linear(inner, channels, rngs)

    def __call__(self, x: jax.Array, ops: TemporalOps) -> jax.Array:
        bt, h, w, c = x.shape
        t = ops.frames
        b = bt // t
        clipped = rearrange(x, "(b n f) h w c -> b n f h w c", b=b, n=ops.clips)
        y = ops.group_norm(self.norm, clipped, None)
        # frames become the sequence axis of attention, every pixel of every video a batch row
        y = self.proj_in(rearrange(y, "b n f h w c -> (b h w) (n f) c"))

        split = lambda a: a.reshape(a.shape[:-1] + (self.heads, -1))

        def attend(attn, z):
            q_of = lambda rows: split(attn.to_q(rows))
            kv_of = lambda rows: (split(attn.to_k(rows)), split(attn.to_v(rows)))
            out = ops.attention(z, q_of, kv_of)
            return attn.to_out(out.reshape(z.shape[0], t, -1))

        for block in self.transformer_blocks:
            y = block(y, attend=attend)
        y = rearrange(self.proj_out(y), "(b h w) t c -> (b t) h w c", b=b, h=h, w=w)
        return x + y
