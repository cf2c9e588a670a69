"""Tiny PyTorch reference models and an offline CLIP tokenizer for parity tests.

The references are the real transformers / diffusers classes at toy sizes, with every parameter
randomised (``randomize_``) so that a wrongly mapped or unused tensor changes the output.
Nothing here touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from vinf_jax.tokenizers.openclip import bytes_to_unicode

TINY_CLIP_TEXT = dict(vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                      num_attention_heads=4, max_position_embeddings=77, layer_norm_eps=1e-5,
                      bos_token_id=998, eos_token_id=999, pad_token_id=999)

TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                layers_per_block=1, norm_num_groups=8, sample_size=32, scaling_factor=0.18215)


@torch.no_grad()
def randomize_(module: torch.nn.Module, std: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Draw every parameter from N(0, std); norm scales from N(1, std) so activations stay O(1)."""
    gen = torch.Generator().manual_seed(seed)
    norms = (torch.nn.LayerNorm, torch.nn.GroupNorm)
    for mod in module.modules():
        for name, p in mod.named_parameters(recurse=False):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
            if isinstance(mod, norms) and name == "weight":
                noise += 1.0
            p.copy_(noise.to(p.dtype))
    return module.eval()


def state_dict_numpy(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().float().numpy() for k, v in module.state_dict().items()}


def tiny_clip_text(hidden_act: str = "quick_gelu", seed: int = 0):
    """A randomised 2-layer transformers ``CLIPTextModel`` (float32, eval) and its config dict."""
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(hidden_act=hidden_act, **TINY_CLIP_TEXT)
    cfg._attn_implementation = "eager"
    model = CLIPTextModel(cfg)
    return randomize_(model, 0.1, seed), cfg.to_dict()


def tiny_vae(seed: int = 0, **overrides):
    """A randomised 2-level diffusers ``AutoencoderKL`` (float32, eval) and its config dict."""
    from diffusers import AutoencoderKL

    model = AutoencoderKL(**{**TINY_VAE, **overrides})
    return randomize_(model, 0.05, seed), dict(model.config)


TINY_MERGES = ["t h", "th e</w>", "a n", "an d</w>", "c a", "ca t</w>", "o n</w>", "i n", "in g</w>"]


def tiny_tokenizer(tmp_dir) -> "transformers.CLIPTokenizer":  # noqa: F821
    """An offline ``CLIPTokenizer`` loaded from vocab.json + merges.txt written into ``tmp_dir``.

    The vocab holds every byte character (bare and word-final), the merge results of
    ``TINY_MERGES`` and the two special tokens, so any text tokenizes; < 1000 ids so the ids
    fit ``tiny_clip_text``'s embedding table.
    """
    from transformers import CLIPTokenizer

    tmp_dir = Path(tmp_dir)
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + [m.replace(" ", "") for m in TINY_MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    (tmp_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(TINY_MERGES) + "\n", encoding="utf-8")
    (tmp_dir / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}), encoding="utf-8")
    return CLIPTokenizer.from_pretrained(str(tmp_dir))
