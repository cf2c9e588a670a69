"""Tokenizers that need no network: OpenCLIP's BPE (VideoCrafter's own text encoder)."""

from vinf_jax.tokenizers.openclip import OpenCLIPTokenizer

__all__ = ["OpenCLIPTokenizer"]
