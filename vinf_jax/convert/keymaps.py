"""The diffusers / transformers key conventions of our modules: the renames and skipped tensors that
map a torch state dict of UNet3DConditionModel, CLIPTextModel or AutoencoderKL onto our trees."""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from vinf_jax.convert.mapping import params_from_torch
from vinf_jax.loading import abstract_params
from vinf_jax.models.clip_text import CLIPTextConfig
from vinf_jax.models.vae import VAEConfig


def unet_rename(key: str) -> str:
    """Our UNet parameter names -> diffusers keys (where diffusers wraps layers in nn.Sequential)."""
    key = re.sub(r"\.(conv[1-4])\.norm\.", r".\1.0.", key)
    key = re.sub(r"\.conv1\.conv\.", ".conv1.2.", key)
    key = re.sub(r"\.(conv[2-4])\.conv\.", r".\1.3.", key)
    key = key.replace(".to_out.", ".to_out.0.")
    key = key.replace(".ff.proj_in.", ".ff.net.0.proj.").replace(".ff.proj_out.", ".ff.net.2.")
    return key


def convert_text_encoder(config_dict: Mapping[str, Any], tensors: Mapping[str, np.ndarray]
                         ) -> tuple[CLIPTextConfig, dict]:
    """transformers CLIPTextModel config + state dict (numpy) -> (config, nested pure param dict).

    Checkpoint files name tensors ``text_model.*``; transformers >= 5 drops that prefix from an
    in-memory ``state_dict()``, so unprefixed keys are accepted too.
    """
    cfg = CLIPTextConfig.from_dict(config_dict)
    if not any(k.startswith("text_model.") for k in tensors):
        tensors = {f"text_model.{k}": v for k, v in tensors.items()}
    params = params_from_torch(abstract_params("text_encoder", cfg), tensors, what="text encoder",
                               ignore=lambda k: k.endswith("embeddings.position_ids"))
    return cfg, params


_DEPRECATED_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_DEPRECATED_ATTN_RE = re.compile(r"^(.*\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$")


def _modernize_vae_key(key: str) -> str:
    """Old diffusers VAE checkpoints name the mid-block attention query/key/value/proj_attn."""
    m = _DEPRECATED_ATTN_RE.match(key)
    return f"{m[1]}.{_DEPRECATED_ATTN[m[2]]}.{m[3]}" if m else key


def convert_vae(config_dict: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> tuple[VAEConfig, dict]:
    """diffusers AutoencoderKL config + state dict (numpy) -> (config, nested pure params of the decoder).

    Encoder tensors (``encoder.*``, ``quant_conv.*``) are skipped: Video-Infinity only decodes.
    """
    cfg = VAEConfig.from_dict(config_dict)
    tensors = {_modernize_vae_key(k): v for k, v in tensors.items()}
    return cfg, params_from_torch(abstract_params("vae", cfg), tensors, what="VAE decoder",
                                  ignore=lambda k: k.startswith(("encoder.", "quant_conv.")))
