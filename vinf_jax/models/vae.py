"""Decoder half of diffusers' ``AutoencoderKL`` in Flax NNX (channels-last).

Video-Infinity only turns denoised latents into frames, so the encoder is not ported. Frames are
independent: a video is decoded as a batch of images. Module attribute names mirror diffusers'
(``decoder.up_blocks.N.resnets.M.conv1``...) so the converter (``vinf_jax.convert``) finds every
tensor without renames. The resnet and upsampler blocks are the UNet's (``models/blocks.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from vinf_jax.errors import ConfigError
from vinf_jax.models.blocks import ResnetBlock2D, Upsample2D
from vinf_jax.models.layers import GroupNorm, conv2d, dot_product_attention, linear

# diffusers hard-codes this for every norm of the VAE, whatever the config says
_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """The decoder-relevant fields of a diffusers ``AutoencoderKL`` config (diffusers' defaults)."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (64,)
    up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",)
    layers_per_block: int = 1
    norm_num_groups: int = 32
    act_fn: str = "silu"
    scaling_factor: float = 0.18215
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        object.__setattr__(self, "up_block_types", tuple(self.up_block_types))
        bad = [t for t in self.up_block_types if t != "UpDecoderBlock2D"]
        if bad:
            raise ConfigError(f"VAE up_block_types {bad} are not supported; only UpDecoderBlock2D")
        if len(self.up_block_types) != len(self.block_out_channels):
            raise ConfigError(f"VAE has {len(self.up_block_types)} up_block_types but "
                              f"{len(self.block_out_channels)} block_out_channels")
        if self.act_fn not in ("silu", "swish"):
            raise ConfigError(f"VAE act_fn={self.act_fn!r} is not supported; only silu")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ConfigError(f"VAE block_out_channels {bad} are not divisible by norm_num_groups={self.norm_num_groups}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VAEConfig":
        """From a diffusers config.json dict; encoder-only and loading keys (force_upcast...) are ignored."""
        for key in ("shift_factor", "latents_mean", "latents_std"):
            # the text-to-video pipeline only divides by scaling_factor; a VAE needing more is another model
            if d.get(key) is not None:
                raise ConfigError(f"VAE config sets {key}={d[key]!r}; only scaling_factor is supported")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class SpatialSelfAttention(nnx.Module):
    """The mid-block ``Attention``: one head over all pixels of a frame, group norm in, residual out."""

    def __init__(self, channels: int, groups: int, *, rngs: nnx.Rngs):
        self.group_norm = GroupNorm(groups, channels, _EPS)
        self.to_q = linear(channels, channels, rngs)
        self.to_k = linear(channels, channels, rngs)
        self.to_v = linear(channels, channels, rngs)
        self.to_out = nnx.List([linear(channels, channels, rngs)])

    def __call__(self, x):
        n, hgt, wid, c = x.shape
        h = self.group_norm(x).reshape(n, hgt * wid, 1, c)
        out = dot_product_attention(self.to_q(h), self.to_k(h), self.to_v(h), c ** -0.5)
        return x + self.to_out[0](out).reshape(x.shape)


class UNetMidBlock2D(nnx.Module):
    def __init__(self, channels: int, groups: int, add_attention: bool, *, rngs: nnx.Rngs):
        self.resnets = nnx.List([ResnetBlock2D(channels, channels, None, groups, _EPS, rngs=rngs) for _ in range(2)])
        self.attentions = nnx.List([SpatialSelfAttention(channels, groups, rngs=rngs)] if add_attention else [])

    def __call__(self, x):
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class UpDecoderBlock2D(nnx.Module):
    def __init__(self, cin: int, cout: int, num_layers: int, groups: int, add_upsample: bool, *, rngs: nnx.Rngs):
        self.resnets = nnx.List([ResnetBlock2D(cin if i == 0 else cout, cout, None, groups, _EPS, rngs=rngs)
                                 for i in range(num_layers)])
        self.upsamplers = nnx.List([Upsample2D(cout, rngs=rngs)]) if add_upsample else None

    def __call__(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class Decoder(nnx.Module):
    """diffusers ``vae.Decoder`` (group norm variant)."""

    def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
        chans = list(reversed(cfg.block_out_channels))
        groups = cfg.norm_num_groups
        self.conv_in = conv2d(cfg.latent_channels, chans[0], 3, rngs)
        self.mid_block = UNetMidBlock2D(chans[0], groups, cfg.mid_block_add_attention, rngs=rngs)
        # diffusers gives each decoder up block one resnet more than the encoder's down blocks
        self.up_blocks = nnx.List([
            UpDecoderBlock2D(chans[max(i - 1, 0)], chans[i], cfg.layers_per_block + 1, groups,
                             add_upsample=i < len(chans) - 1, rngs=rngs)
            for i in range(len(chans))
        ])
        self.conv_norm_out = GroupNorm(groups, cfg.block_out_channels[0], _EPS, silu=True)
        self.conv_out = conv2d(cfg.block_out_channels[0], cfg.out_channels, 3, rngs)

    def __call__(self, z):
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_norm_out(x))  # norm -> SiLU


class VAEDecoder(nnx.Module):
    """``post_quant_conv`` + ``decoder`` of an ``AutoencoderKL``; see :meth:`decode`."""

    def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.post_quant_conv = (conv2d(cfg.latent_channels, cfg.latent_channels, 1, rngs)
                                if cfg.use_post_quant_conv else None)
        self.decoder = Decoder(cfg, rngs=rngs)

    def decode(self, latents: jax.Array) -> jax.Array:
        """Diffusion latents (N, h, w, latent_channels) -> images (N, 8h, 8w, out_channels) in [-1, 1] (unclamped).

        Divides by ``scaling_factor`` first, as the pipeline's ``decode_latents`` does. Output is float32.
        """
        # divide in float32 (latents are ~1/scaling_factor times larger than the model's inputs), then compute
        # in the parameters' dtype
        z = jnp.asarray(latents, jnp.float32) / jnp.float32(self.config.scaling_factor)
        z = z.astype(self.decoder.conv_in.kernel[...].dtype)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z).astype(jnp.float32)

    __call__ = decode
