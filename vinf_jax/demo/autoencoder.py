"""diffusers ``AutoencoderKL`` for training the demo: the encoder half, joined to our ``VAEDecoder``.

The pipeline only ever decodes (``vinf_jax.models.vae``), so the encoder lives here, used by
``train`` alone. Attribute names follow diffusers (``encoder.down_blocks.0.resnets.0.conv1``,
``quant_conv``...) so the exported state dict is a real diffusers ``AutoencoderKL`` checkpoint and
the converter reads its decoder half exactly as it reads a downloaded VAE.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vinf_jax.models.layers import GroupNorm, conv2d
from vinf_jax.models.vae import _EPS, Decoder, ResnetBlock2D, UNetMidBlock2D, VAEConfig


class Downsample2D(nnx.Module):
    """diffusers' encoder downsampler: pad (0, 1, 0, 1) with zeros, then a 3x3 conv of stride 2."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv = conv2d(channels, channels, 3, rngs, stride=2, padding=0)

    def __call__(self, x):
        return self.conv(jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0))))


class DownEncoderBlock2D(nnx.Module):
    def __init__(self, cin: int, cout: int, num_layers: int, groups: int, add_downsample: bool, *, rngs: nnx.Rngs):
        self.resnets = nnx.List([ResnetBlock2D(cin if i == 0 else cout, cout, None, groups, _EPS, rngs=rngs)
                                 for i in range(num_layers)])
        self.downsamplers = nnx.List([Downsample2D(cout, rngs=rngs)]) if add_downsample else None

    def __call__(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class Encoder(nnx.Module):
    """diffusers ``vae.Encoder`` (``double_z``): images (N, H, W, 3) -> moments (N, h, w, 2 * latent)."""

    def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
        chans, groups = cfg.block_out_channels, cfg.norm_num_groups
        self.conv_in = conv2d(cfg.in_channels, chans[0], 3, rngs)
        self.down_blocks = nnx.List([
            DownEncoderBlock2D(chans[max(i - 1, 0)], chans[i], cfg.layers_per_block, groups,
                               add_downsample=i < len(chans) - 1, rngs=rngs)
            for i in range(len(chans))])
        self.mid_block = UNetMidBlock2D(chans[-1], groups, cfg.mid_block_add_attention, rngs=rngs)
        self.conv_norm_out = GroupNorm(groups, chans[-1], _EPS)
        self.conv_out = conv2d(chans[-1], 2 * cfg.latent_channels, 3, rngs)

    def __call__(self, x):
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(jax.nn.silu(self.conv_norm_out(x)))


class AutoencoderKL(nnx.Module):
    """Encoder + ``quant_conv`` (training only) and ``post_quant_conv`` + decoder (what ships)."""

    def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        c = cfg.latent_channels
        self.encoder = Encoder(cfg, rngs=rngs)
        self.quant_conv = conv2d(2 * c, 2 * c, 1, rngs)
        self.post_quant_conv = conv2d(c, c, 1, rngs)
        self.decoder = Decoder(cfg, rngs=rngs)

    def encode(self, images):
        """images (N, H, W, 3) in [-1, 1] -> (mean, logvar) of the posterior, unscaled."""
        moments = self.quant_conv(self.encoder(images))
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, -30.0, 20.0)

    def decode(self, z):
        """Unscaled latents -> images in [-1, 1] (unclamped); the shipped ``VAEDecoder`` computes the same."""
        return self.decoder(self.post_quant_conv(z))
