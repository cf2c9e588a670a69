"""vinf_jax: Video-Infinity (clip-parallel long video generation on VideoCrafter2) in JAX/Flax."""

from vinf_jax.config import VideoInfinityConfig, load_config
from vinf_jax.errors import CheckpointError, ConfigError, ConversionError

__all__ = ["VideoInfinityPipeline", "VideoInfinityConfig", "load_config", "load_unet", "ConfigError",
           "ConversionError", "CheckpointError"]


def __getattr__(name):  # keep `import vinf_jax` light: jax loads only when a model is needed
    if name == "VideoInfinityPipeline":
        from vinf_jax.pipeline import VideoInfinityPipeline

        return VideoInfinityPipeline
    if name == "load_unet":
        from vinf_jax.loading import load_unet

        return load_unet
    raise AttributeError(name)
