"""VideoCrafter2's UNet: diffusers ``UNet3DConditionModel`` plus fps conditioning, in Flax NNX.

Built from a diffusers ``config.json`` dict, so tiny test configs and the full 1.41 B-parameter
model run the same code. Channels-last inside: ``(B, T, H, W, C)``, frames folded into the batch
for the frame-local layers. The temporal layers take a ``TemporalOps`` (see ``temporal.py``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vinf_jax.errors import ConversionError
from vinf_jax.models.blocks import Downsample2D, ResnetBlock2D, Transformer2D, Upsample2D
from vinf_jax.models.layers import GroupNorm, TimestepEmbedding, conv2d, guidance_embedding, linear, timestep_embedding
from vinf_jax.models.temporal import TemporalConvLayer, TemporalOps, TransformerTemporal, VanillaTemporal

_DOWN = ("CrossAttnDownBlock3D", "DownBlock3D")
_UP = ("CrossAttnUpBlock3D", "UpBlock3D")


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 4
    out_channels: int = 4
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",)
    up_block_types: tuple[str, ...] = ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 1024
    attention_head_dim: int | tuple[int, ...] = 64
    fps_cond: bool = True
    # T2V-Turbo (method §12): width of the guidance-scale embedding fed through ``time_cond_proj``, and
    # of the motion-guidance embedding (``motion_cond_proj`` + ``combine_proj``); None: plain VideoCrafter2
    time_cond_proj_dim: int | None = None
    motion_cond_proj_dim: int | None = None

    @classmethod
    def from_dict(cls, d: dict, *, fps_cond: bool | None = None) -> "UNetConfig":
        """From a diffusers config.json dict; ``fps_cond`` overrides the dict (inferred from weights)."""
        if d.get("num_attention_heads") is not None:
            raise ConversionError("unet config: num_attention_heads must be null (diffusers' UNet3D quirk: "
                                  "heads come from attention_head_dim)")
        if d.get("act_fn", "silu") != "silu":
            raise ConversionError(f"unet config: act_fn={d['act_fn']!r} is not supported (allowed: ('silu',))")
        for key in ("time_cond_proj_dim", "motion_cond_proj_dim"):
            if d.get(key) is not None and (isinstance(d[key], bool) or not isinstance(d[key], int) or d[key] < 1):
                raise ConversionError(f"unet config: {key}={d[key]!r} must be a positive integer or null")
        if d.get("motion_cond_proj_dim") is not None and d.get("time_cond_proj_dim") is None:
            raise ConversionError("unet config: motion_cond_proj_dim needs time_cond_proj_dim (T2V-Turbo combines both)")
        for key, allowed in (("down_block_types", _DOWN), ("up_block_types", _UP)):
            bad = [t for t in d.get(key, ()) if t not in allowed]
            if bad:
                raise ConversionError(f"unet config: {key} contains {bad}; allowed: {allowed}")
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in fields}
        if fps_cond is not None:
            kw["fps_cond"] = fps_cond
        return cls(**kw)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def head_dims(self) -> tuple[int, ...]:
        # diffusers: num_attention_heads = num_attention_heads or attention_head_dim, and blocks are
        # then built with (channels // that) heads of size `that`.
        n = self.attention_head_dim
        return tuple(n) if isinstance(n, (tuple, list)) else (n,) * len(self.block_out_channels)


class UNetBlock3D(nnx.Module):
    """Down, mid or up block of UNet3D: resnets, temp_convs, [attentions, temp_attentions], resampler."""

    def __init__(self, kind: str, cfg: UNetConfig, cin: int, cout: int, dim_head: int, *, rngs: nnx.Rngs,
                 prev_out: int = 0, add_resample: bool = False, scale: float = 1.0):
        temb, g, eps = cfg.block_out_channels[0] * 4, cfg.norm_num_groups, cfg.norm_eps
        self.kind = kind
        self.cross = kind in ("down_cross", "mid", "up_cross")
        n = cfg.layers_per_block + (1 if kind.startswith("up") else 0)
        if kind == "mid":
            n_res, n_att = 2, 1
            res_io = [(cin, cin), (cin, cin)]
        else:
            n_res = n_att = n
            if kind.startswith("down"):
                res_io = [(cin if i == 0 else cout, cout) for i in range(n)]
            else:  # up: input is cat(h, skip)
                res_io = [((prev_out if i == 0 else cout) + (cin if i == n - 1 else cout), cout) for i in range(n)]
        ch = cin if kind == "mid" else cout
        heads = ch // dim_head
        self.resnets = nnx.List([ResnetBlock2D(a, b, temb, g, eps, rngs=rngs, output_scale_factor=scale)
                                 for a, b in res_io])
        self.temp_convs = nnx.List([TemporalConvLayer(ch, g, rngs=rngs) for _ in range(n_res)])
        if self.cross:
            self.attentions = nnx.List([Transformer2D(ch, heads, dim_head, cfg.cross_attention_dim, g, rngs=rngs)
                                        for _ in range(n_att)])
            self.temp_attentions = nnx.List([TransformerTemporal(ch, heads, dim_head, g, rngs=rngs)
                                             for _ in range(n_att)])
        if add_resample and kind.startswith("down"):
            self.downsamplers = nnx.List([Downsample2D(cout, cfg.downsample_padding, rngs=rngs)])
        if add_resample and kind.startswith("up"):
            self.upsamplers = nnx.List([Upsample2D(cout, rngs=rngs)])

    def _layer(self, i, h, temb, ctx, ops, with_attn=True):
        h = self.temp_convs[i](self.resnets[i](h, temb), ops)
        if self.cross and with_attn:
            h = self.temp_attentions[i](self.attentions[i](h, ctx), ops)
        return h

    def down(self, h, temb, ctx, ops):
        skips = []
        for i in range(len(self.resnets)):
            h = self._layer(i, h, temb, ctx, ops)
            skips.append(h)
        if hasattr(self, "downsamplers"):
            h = self.downsamplers[0](h)
            skips.append(h)
        return h, skips

    def mid(self, h, temb, ctx, ops):
        h = self.temp_convs[0](self.resnets[0](h, temb), ops)
        for i in range(len(self.attentions)):
            h = self.temp_attentions[i](self.attentions[i](h, ctx), ops)
            h = self.temp_convs[i + 1](self.resnets[i + 1](h, temb), ops)
        return h

    def up(self, h, skips, temb, ctx, ops, upsample_size=None):
        for i in range(len(self.resnets)):
            h = jnp.concatenate([h, skips.pop()], axis=-1)
            h = self._layer(i, h, temb, ctx, ops)
        if hasattr(self, "upsamplers"):
            h = self.upsamplers[0](h, upsample_size)
        return h


class UNet3D(nnx.Module):
    """VideoCrafter2 UNet. ``__call__`` works channels-last: sample (B, T, H, W, C) -> same."""

    def __init__(self, cfg: UNetConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        c0 = cfg.block_out_channels[0]
        heads = cfg.head_dims()
        self.conv_in = conv2d(cfg.in_channels, c0, 3, rngs)
        self.time_embedding = TimestepEmbedding(c0, 4 * c0, rngs=rngs)
        if cfg.fps_cond:
            self.fps_embedding = TimestepEmbedding(c0, 4 * c0, rngs=rngs)
        if cfg.time_cond_proj_dim is not None:  # T2V-Turbo's three bias-free projections (method §12.1)
            self.time_cond_proj = linear(cfg.time_cond_proj_dim, c0, rngs, bias=False)
        if cfg.motion_cond_proj_dim is not None:
            self.motion_cond_proj = linear(cfg.motion_cond_proj_dim, c0, rngs, bias=False)
            self.combine_proj = linear(2 * c0, c0, rngs, bias=False)
        dh = cfg.attention_head_dim if isinstance(cfg.attention_head_dim, int) else cfg.attention_head_dim[0]
        self.transformer_in = TransformerTemporal(c0, 8, dh, cfg.norm_num_groups, rngs=rngs)
        chans = cfg.block_out_channels
        last = len(chans) - 1
        self.down_blocks = nnx.List([
            UNetBlock3D("down_cross" if t == "CrossAttnDownBlock3D" else "down", cfg, chans[max(i - 1, 0)], chans[i],
                        heads[i], rngs=rngs, add_resample=i < last)
            for i, t in enumerate(cfg.down_block_types)])
        self.mid_block = UNetBlock3D("mid", cfg, chans[-1], chans[-1], heads[-1], rngs=rngs,
                                     scale=cfg.mid_block_scale_factor)
        rchans, rheads = chans[::-1], heads[::-1]
        self.up_blocks = nnx.List([
            UNetBlock3D("up_cross" if t == "CrossAttnUpBlock3D" else "up", cfg, rchans[min(i + 1, last)], rchans[i],
                        rheads[i], rngs=rngs, prev_out=rchans[max(i - 1, 0)], add_resample=i < last)
            for i, t in enumerate(cfg.up_block_types)])
        self.conv_norm_out = GroupNorm(cfg.norm_num_groups, c0, cfg.norm_eps, silu=True)
        self.conv_out = conv2d(c0, cfg.out_channels, 3, rngs)

    def embed(self, timesteps, fps, batch: int, dtype, guidance=None, motion=None):
        """Time (+ guidance, motion) (+ fps) embedding, (batch, 4 * C0), in ``dtype``.

        T2V-Turbo (method §12.1): ``time_embedding(t_emb + c)`` with ``c = time_cond_proj(w_emb)``, or with a
        motion input ``c = combine_proj([time_cond_proj(w_emb), motion_cond_proj(m_emb)])``; fps added after.
        """
        cfg, c0 = self.config, self.config.block_out_channels[0]
        t = jnp.broadcast_to(jnp.asarray(timesteps, jnp.float32), (batch,))
        t_emb = timestep_embedding(t, c0).astype(dtype)
        if guidance is not None or motion is not None:
            if cfg.time_cond_proj_dim is None:
                raise ValueError("guidance: this UNet has no guidance embedding (time_cond_proj); it is not a "
                                 "T2V-Turbo UNet: use classifier-free guidance instead")
            if motion is not None and cfg.motion_cond_proj_dim is None:
                raise ValueError("motion: this UNet has no motion embedding (motion_cond_proj); pass motion=None")
            if guidance is None:
                raise ValueError("motion needs guidance: T2V-Turbo combines the two embeddings")
            w = jnp.broadcast_to(jnp.asarray(guidance, jnp.float32), (batch,))
            c = self.time_cond_proj(guidance_embedding(w, cfg.time_cond_proj_dim).astype(dtype))
            if motion is not None:
                m = jnp.broadcast_to(jnp.asarray(motion, jnp.float32), (batch,))
                mc = self.motion_cond_proj(guidance_embedding(m, cfg.motion_cond_proj_dim).astype(dtype))
                c = self.combine_proj(jnp.concatenate([c, mc], axis=-1))
            t_emb = t_emb + c.astype(dtype)
        emb = self.time_embedding(t_emb)
        if self.config.fps_cond:
            f = jnp.broadcast_to(jnp.asarray(fps, jnp.float32), (batch,))
            emb = emb + self.fps_embedding(timestep_embedding(f, c0).astype(dtype))
        return emb.astype(dtype)

    def __call__(self, sample, timesteps, context, fps=24, ops: TemporalOps | None = None, guidance=None,
                 motion=None):
        """sample (B, T, H, W, C_in); context (B, L, D) shared by all frames or (B, clips, L, D) per clip.

        ``ops`` decides what the temporal layers see (default: the T frames are one clip). ``guidance`` /
        ``motion``: T2V-Turbo's embedded guidance and motion-guidance scales (scalars or (B,)); None = no input.
        """
        b, t, h, w, _ = sample.shape
        ops = ops or VanillaTemporal(frames=t)
        assert ops.frames == t, (ops.frames, t)
        dtype = self.conv_in.kernel[...].dtype
        temb = jnp.repeat(self.embed(timesteps, fps, b, dtype, guidance, motion), t, axis=0)
        if context.ndim == 3:
            ctx = jnp.repeat(context, t, axis=0)
        else:  # per-clip prompts: clip c's embedding for each of its frames
            ctx = jnp.repeat(context, t // context.shape[1], axis=1).reshape((b * t,) + context.shape[2:])
        ctx = ctx.astype(dtype)
        x = self.conv_in(sample.astype(dtype).reshape(b * t, h, w, -1))
        x = self.transformer_in(x, ops)
        skips = [x]
        for block in self.down_blocks:
            x, s = block.down(x, temb, ctx, ops)
            skips += s
        x = self.mid_block.mid(x, temb, ctx, ops)
        for i, block in enumerate(self.up_blocks):
            n = len(block.resnets)
            mine, skips = skips[-n:], skips[:-n]
            size = skips[-1].shape[1:3] if skips else None
            x = block.up(x, list(mine), temb, ctx, ops, size)
        # float32 input promotes conv_out to float32: the noise prediction leaves the model unrounded,
        # before classifier-free guidance multiplies its error by ~2 * guidance_scale
        x = self.conv_out(self.conv_norm_out(x).astype(jnp.float32))  # norm -> SiLU
        return x.reshape(b, t, h, w, -1)
