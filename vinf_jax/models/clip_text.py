"""CLIP text encoder (transformers ``CLIPTextModel``) in Flax NNX.

VideoCrafter2's diffusers pipeline conditions the UNet on ``last_hidden_state`` of this encoder,
computed from 77 padded token ids *without* a padding mask (``TextToVideoSDPipeline`` calls
``text_encoder(input_ids)``), so only the causal mask is applied here. Module attribute names
mirror the checkpoint keys (``text_model.encoder.layers.N.self_attn.q_proj``...) so that
the converter (``vinf_jax.convert``) can name every parameter's tensor.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vinf_jax.errors import ConfigError, VinfWarning
from vinf_jax.models.layers import LayerNorm, dot_product_attention, linear

_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    """The fields of a transformers ``CLIPTextConfig`` that shape the forward pass."""

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        if self.hidden_act not in _ACTIVATIONS:
            raise ConfigError(f"text encoder hidden_act={self.hidden_act!r} is not supported; "
                              f"use one of {sorted(_ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"text encoder hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_attention_heads}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CLIPTextConfig":
        """From a transformers config.json dict; missing keys take transformers' defaults."""
        if "text_config" in d:  # a full CLIPConfig: the text tower's settings live in a sub-dict
            d = d["text_config"]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class CLIPAttention(nnx.Module):
    def __init__(self, cfg: CLIPTextConfig, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.q_proj = linear(d, d, rngs)
        self.k_proj = linear(d, d, rngs)
        self.v_proj = linear(d, d, rngs)
        self.out_proj = linear(d, d, rngs)

    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        b, n, d = x.shape
        split = lambda t: t.reshape(b, n, self.num_heads, d // self.num_heads)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        out = dot_product_attention(q, k, v, (d // self.num_heads) ** -0.5, bias)
        return self.out_proj(out.reshape(b, n, d))


class CLIPMLP(nnx.Module):
    def __init__(self, cfg: CLIPTextConfig, *, rngs: nnx.Rngs):
        self.act = _ACTIVATIONS[cfg.hidden_act]
        self.fc1 = linear(cfg.hidden_size, cfg.intermediate_size, rngs)
        self.fc2 = linear(cfg.intermediate_size, cfg.hidden_size, rngs)

    def __call__(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nnx.Module):
    """Pre-LN transformer block."""

    def __init__(self, cfg: CLIPTextConfig, *, rngs: nnx.Rngs):
        self.layer_norm1 = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.self_attn = CLIPAttention(cfg, rngs=rngs)
        self.layer_norm2 = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.mlp = CLIPMLP(cfg, rngs=rngs)

    def __call__(self, x, bias):
        x = x + self.self_attn(self.layer_norm1(x), bias)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nnx.Module):
    def __init__(self, cfg: CLIPTextConfig, *, rngs: nnx.Rngs):
        self.layers = nnx.List([CLIPEncoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)])

    def __call__(self, x, bias):
        for layer in self.layers:
            x = layer(x, bias)
        return x


class CLIPTextEmbeddings(nnx.Module):
    def __init__(self, cfg: CLIPTextConfig, *, rngs: nnx.Rngs):
        self.token_embedding = nnx.Embed(cfg.vocab_size, cfg.hidden_size, rngs=rngs)
        self.position_embedding = nnx.Embed(cfg.max_position_embeddings, cfg.hidden_size, rngs=rngs)

    def __call__(self, input_ids):
        positions = jnp.arange(input_ids.shape[-1])
        return self.token_embedding(input_ids) + self.position_embedding(positions)[None]


class CLIPTextTransformer(nnx.Module):
    def __init__(self, cfg: CLIPTextConfig, *, rngs: nnx.Rngs):
        self.embeddings = CLIPTextEmbeddings(cfg, rngs=rngs)
        self.encoder = CLIPEncoder(cfg, rngs=rngs)
        self.final_layer_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)

    def __call__(self, input_ids):
        n = input_ids.shape[-1]
        causal = jnp.tril(jnp.ones((n, n), bool))
        # finite rather than -inf, as transformers does; every row keeps its diagonal anyway
        bias = jnp.where(causal, 0.0, jnp.finfo(jnp.float32).min)
        h = self.encoder(self.embeddings(input_ids), bias)
        return self.final_layer_norm(h)


class CLIPTextModel(nnx.Module):
    """transformers ``CLIPTextModel``: ``__call__(input_ids (B, L)) -> last_hidden_state (B, L, hidden)``."""

    def __init__(self, cfg: CLIPTextConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.text_model = CLIPTextTransformer(cfg, rngs=rngs)

    def __call__(self, input_ids: jax.Array) -> jax.Array:
        if input_ids.shape[-1] > self.config.max_position_embeddings:
            raise ValueError(f"{input_ids.shape[-1]} tokens exceed max_position_embeddings="
                             f"{self.config.max_position_embeddings}")
        return self.text_model(jnp.asarray(input_ids, jnp.int32))


def tokenize(tokenizer, prompts: str | Sequence[str]) -> np.ndarray:
    """Token ids exactly as diffusers' ``TextToVideoSDPipeline`` makes them: (B, model_max_length) int32.
    A prompt longer than the encoder's context is cut, as there; a PromptWarning says what was cut."""
    if isinstance(prompts, str):
        prompts = [prompts]
    for prompt in dict.fromkeys(prompts):
        _warn_if_cut(tokenizer, prompt)
    ids = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="np").input_ids
    return np.asarray(ids, np.int32)


class PromptWarning(VinfWarning):
    """A prompt does not fit the text encoder's context and was cut."""


def _warn_if_cut(tokenizer, prompt: str) -> None:
    limit = tokenizer.model_max_length
    ids = list(tokenizer([prompt], padding=False, truncation=False).input_ids[0])
    if len(ids) <= limit:
        return
    cut = ids[limit - 1:-1]  # the text tokens past the limit (the end token stays)
    text = tokenizer.decode(cut).strip() if hasattr(tokenizer, "decode") else f"the last {len(cut)} token(s)"
    short = prompt if len(prompt) <= 60 else prompt[:57] + "..."
    warnings.warn(f"prompt {short!r} has {len(ids)} tokens, more than the text encoder's {limit}; "
                  f"cut: {text!r}", PromptWarning, stacklevel=3)
