"""Parity of the Flax VAE decoder with diffusers' ``AutoencoderKL.decode`` (tiny, random, float32)."""

import numpy as np
import pytest
import torch
from flax import nnx

from torch_refs import state_dict_numpy, tiny_vae
from vinf_jax.errors import ConfigError, ConversionError
from vinf_jax.convert.keymaps import convert_vae
from vinf_jax.loading import Model
from vinf_jax.models.vae import VAEConfig


def flax_from_torch(ref, cfg_dict):
    cfg, params = convert_vae(cfg_dict, state_dict_numpy(ref))
    return Model("vae", cfg, params).module()


def reference_decode(ref, latents_nhwc):
    """What the text-to-video pipeline does: latents / scaling_factor, then vae.decode."""
    z = torch.from_numpy(latents_nhwc).permute(0, 3, 1, 2) / ref.config.scaling_factor
    with torch.no_grad():
        return ref.decode(z).sample.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("overrides", [
    dict(layers_per_block=1, norm_num_groups=8),
    dict(layers_per_block=2, norm_num_groups=32, mid_block_add_attention=False),
])
def test_decode_matches_diffusers(overrides):
    ref, cfg_dict = tiny_vae(**overrides)
    model = flax_from_torch(ref, cfg_dict)
    decode = nnx.jit(lambda m, z: m.decode(z))  # one compile per shape beats eager op-by-op on CPU
    latents = np.random.default_rng(0).normal(0, 1, (3, 6, 10, 4)).astype(np.float32) * 0.18215
    want = reference_decode(ref, latents)
    got = np.asarray(decode(model, latents))
    assert got.shape == want.shape == (3, 12, 20, 3)  # two levels: one 2x upsampler
    err, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
    assert err <= 1e-4 * scale, (err, scale)
    # frames are independent: decoding one alone gives the same frame
    np.testing.assert_allclose(np.asarray(decode(model, latents[1:2]))[0], got[1], atol=1e-5 * scale)


def test_convert_ignores_encoder_and_accepts_deprecated_attention_names():
    ref, cfg_dict = tiny_vae()
    sd = state_dict_numpy(ref)
    assert any(k.startswith("encoder.") for k in sd) and "quant_conv.weight" in sd
    old = {k.replace(".to_q.", ".query.").replace(".to_k.", ".key.").replace(".to_v.", ".value.")
           .replace(".to_out.0.", ".proj_attn."): v for k, v in sd.items()}
    _, a = convert_vae(cfg_dict, sd)
    _, b = convert_vae(cfg_dict, old)
    attn_a = a["decoder"]["mid_block"]["attentions"][0]
    attn_b = b["decoder"]["mid_block"]["attentions"][0]
    np.testing.assert_array_equal(attn_a["to_out"][0]["kernel"], attn_b["to_out"][0]["kernel"])
    del sd["decoder.conv_out.bias"]
    sd["decoder.extra.weight"] = np.zeros(1)
    with pytest.raises(ConversionError, match="conv_out.bias(.|\n)*decoder.extra.weight"):
        convert_vae(cfg_dict, sd)


def test_config_rejects_unsupported():
    with pytest.raises(ConfigError, match="AttnUpDecoderBlock2D"):
        VAEConfig.from_dict({"up_block_types": ["AttnUpDecoderBlock2D"], "block_out_channels": [64]})
    with pytest.raises(ConfigError, match="shift_factor"):
        VAEConfig.from_dict({"shift_factor": 0.1})
    cfg = VAEConfig.from_dict({"block_out_channels": [32, 64], "up_block_types": ["UpDecoderBlock2D"] * 2,
                               "force_upcast": True, "_class_name": "AutoencoderKL"})
    assert cfg.block_out_channels == (32, 64)
