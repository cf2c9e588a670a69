"""Frame-local blocks of the VideoCrafter2 UNet (diffusers names): resnets, spatial transformers,
down/up-samplers. Inputs are channels-last with frames folded into the batch: (B*F, H, W, C).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from flax import nnx

from vinf_jax.models.layers import GroupNorm, LayerNorm, conv2d, dot_product_attention, geglu, linear, silu


def _attention_impl(q, k) -> str | None:
    """cuDNN flash attention for half-precision self-attention on GPUs (what makes the spatial
    attention fast: no (tokens x tokens) score matrix in memory); None (our XLA attention) elsewhere.
    ``VINF_ATTENTION`` (``xla`` / ``cudnn``) overrides the choice."""
    forced = os.environ.get("VINF_ATTENTION")
    if forced:
        return None if forced == "xla" else forced
    if jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16) and q.shape[1] == k.shape[1]:
        return "cudnn"
    return None


def attention(q, k, v, heads: int):
    """Multi-head softmax attention for frame-local layers: (B, Lq, H*D), (B, Lk, H*D) -> (B, Lq, H*D)."""
    b, lq, inner = q.shape
    d = inner // heads
    split = lambda x: x.reshape(x.shape[0], x.shape[1], heads, d)
    q4, k4, v4 = split(q), split(k), split(v)
    impl = _attention_impl(q, k)
    out = None
    if impl is not None:
        try:
            out = jax.nn.dot_product_attention(q4, k4, v4, scale=d ** -0.5, implementation=impl)
        except Exception:  # cuDNN unavailable or shape unsupported at trace time: the XLA path below
            pass
    if out is None:  # float32 logits, softmax and probabilities x values, as the temporal layers
        out = dot_product_attention(q4, k4, v4, d ** -0.5)
    return out.reshape(b, lq, inner)


class Attention(nnx.Module):
    """diffusers ``Attention`` (no q/k/v bias, ``to_out.0`` with bias). ``context`` None: self-attention."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: int | None = None, *, rngs: nnx.Rngs):
        inner = heads * dim_head
        self.heads = heads
        self.to_q = linear(query_dim, inner, rngs, bias=False)
        self.to_k = linear(context_dim or query_dim, inner, rngs, bias=False)
        self.to_v = linear(context_dim or query_dim, inner, rngs, bias=False)
        self.to_out = linear(inner, query_dim, rngs)

    def __call__(self, x, context=None):
        context = x if context is None else context
        return self.to_out(attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads))


class FeedForward(nnx.Module):
    """diffusers ``FeedForward`` with GEGLU: ``net.0.proj`` (as proj_in) and ``net.2`` (as proj_out)."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, mult: int = 4):
        inner = dim * mult
        self.proj_in = linear(dim, inner * 2, rngs)
        self.proj_out = linear(inner, dim, rngs)

    def __call__(self, x):
        h, gate = jnp.split(self.proj_in(x), 2, axis=-1)
        return self.proj_out(geglu(h, gate))


class BasicTransformerBlock(nnx.Module):
    """Self-attention, cross-attention (or a second self-attention), GEGLU feed-forward; pre-LN.

    ``attn1_fn`` / ``attn2_fn`` let the temporal transformer route its attention through the
    temporal ops (clip windows, global context) while the spatial one uses plain attention.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, cross_dim: int | None, *, rngs: nnx.Rngs):
        self.norm1 = LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head, rngs=rngs)
        self.norm2 = LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim_head, cross_dim, rngs=rngs)
        self.norm3 = LayerNorm(dim)
        self.ff = FeedForward(dim, rngs=rngs)

    def __call__(self, x, context=None, attend=None):
        if attend is None:
            x = x + self.attn1(self.norm1(x))
            x = x + self.attn2(self.norm2(x), context)
        else:  # temporal: both attentions are self-attention over frames, done by `attend`
            x = x + attend(self.attn1, self.norm1(x))
            x = x + attend(self.attn2, self.norm2(x))
        return x + self.ff(self.norm3(x))


class Transformer2D(nnx.Module):
    """diffusers ``Transformer2DModel`` with linear projections (as UNet3D builds it), per frame."""

    def __init__(self, channels: int, heads: int, dim_head: int, cross_dim: int, groups: int, *, rngs: nnx.Rngs):
        inner = heads * dim_head
        self.norm = GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = linear(channels, inner, rngs)
        self.transformer_blocks = nnx.List([BasicTransformerBlock(inner, heads, dim_head, cross_dim, rngs=rngs)])
        self.proj_out = linear(inner, channels, rngs)

    def __call__(self, x, context):
        n, h, w, c = x.shape
        y = self.proj_in(self.norm(x).reshape(n, h * w, c))
        for block in self.transformer_blocks:
            y = block(y, context)
        return x + self.proj_out(y).reshape(n, h, w, c)


class ResnetBlock2D(nnx.Module):
    """diffusers ``ResnetBlock2D`` (default time-embedding norm, SiLU, optional 1x1 shortcut).

    ``temb=None`` leaves out the time embedding, as the VAE's blocks do.
    """

    def __init__(self, cin: int, cout: int, temb: int | None, groups: int, eps: float, *, rngs: nnx.Rngs,
                 output_scale_factor: float = 1.0):
        self.output_scale_factor = output_scale_factor
        self.norm1 = GroupNorm(groups, cin, eps, silu=True)
        self.conv1 = conv2d(cin, cout, 3, rngs)
        self.time_emb_proj = linear(temb, cout, rngs) if temb else None
        self.norm2 = GroupNorm(groups, cout, eps, silu=True)
        self.conv2 = conv2d(cout, cout, 3, rngs)
        self.conv_shortcut = conv2d(cin, cout, 1, rngs) if cin != cout else None

    def __call__(self, x, temb=None):
        h = self.conv1(self.norm1(x))  # norm -> SiLU
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(silu(temb))[:, None, None, :]
        h = self.conv2(self.norm2(h))  # norm -> SiLU
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        out = x + h
        return out if self.output_scale_factor == 1.0 else out / self.output_scale_factor


class Downsample2D(nnx.Module):
    """Stride-2 3x3 conv (``downsamplers.0.conv``); padding 0 pads right/bottom by one as diffusers."""

    def __init__(self, channels: int, padding: int, *, rngs: nnx.Rngs):
        self.padding = padding
        self.conv = conv2d(channels, channels, 3, rngs, stride=2, padding=padding)

    def __call__(self, x):
        if self.padding == 0:
            x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return self.conv(x)


def nearest_resize(x, size: tuple[int, int]):
    """torch ``F.interpolate(mode="nearest")`` to ``size``: source index floor(i * in / out)."""
    h, w = x.shape[1:3]
    rows = (jnp.arange(size[0]) * h) // size[0]
    cols = (jnp.arange(size[1]) * w) // size[1]
    return x[:, rows][:, :, cols]


class Upsample2D(nnx.Module):
    """Nearest 2x upsampling (or to the skip connection's size) then a 3x3 conv (``upsamplers.0.conv``)."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv = conv2d(channels, channels, 3, rngs)

    def __call__(self, x, size=None):
        n, h, w, c = x.shape
        if size is None or tuple(size) == (2 * h, 2 * w):
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        else:
            x = nearest_resize(x, size)
        return self.conv(x)
