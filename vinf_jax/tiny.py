"""``tiny-random``: a small random model of the real architecture, built in process.

No download and no torch: the demo config (``configs/tiny.json``) and the CLI tests run the whole
path (tokenize, CLIP, clip-parallel UNet loop, VAE, mp4) on it. Parameters come from a fixed seed,
so the same config always gives the same video.
"""

from __future__ import annotations

import zlib

import numpy as np

from vinf_jax.models.clip_text import CLIPTextConfig
from vinf_jax.models.unet3d import UNetConfig
from vinf_jax.models.vae import VAEConfig

UNET = UNetConfig(down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                  up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), block_out_channels=(16, 32),
                  layers_per_block=1, norm_num_groups=4, attention_head_dim=8, cross_attention_dim=32)
TEXT = CLIPTextConfig.from_dict(dict(vocab_size=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu",
                                     layer_norm_eps=1e-5))
VAE = VAEConfig.from_dict(dict(in_channels=3, out_channels=3, latent_channels=4,
                               block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=4,
                               up_block_types=["UpDecoderBlock2D"] * 4, scaling_factor=0.18215))
# names Video-Infinity's released sampler, so scheduler "auto" (the default) keeps the demo's video
SCHEDULER = dict(_class_name="DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver++",
                 num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                 prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1)


class WordTokenizer:
    """Stand-in for CLIPTokenizer: lower-cased words hashed into the vocabulary, BOS/EOS, padded to 77."""

    model_max_length = 77
    bos, eos = 1, 2

    def __call__(self, prompts, padding="max_length", max_length=77, truncation=True, return_tensors="np"):
        rows = []
        for p in prompts:
            ids = [3 + zlib.crc32(w.encode()) % (TEXT.vocab_size - 3) for w in p.lower().split()]
            ids = [self.bos] + (ids[: max_length - 2] if truncation else ids) + [self.eos]
            rows.append(ids + [self.eos] * (max_length - len(ids)) if padding == "max_length" else ids)

        class Out:
            input_ids = np.asarray(rows, np.int32) if padding == "max_length" else rows

        return Out()
