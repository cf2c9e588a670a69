"""Typed configuration: reads the original Video-Infinity JSON as-is, validates it, fails fast.

    python -m vinf_jax.generate --config configs/config.json --set model=tiny-random --set pipe_configs.steps=2

The file layout is the original one (`pipe_configs`, `plugin_configs`, `devices`, ...) plus the
`vinf_jax` keys `model`, `num_clips`, `edge_mode`, `distributed`, `save_frames`,
`pipe_configs.scheduler`, `pipe_configs.negative_prompt` and `plugin_configs.group_norm.sync`.
Every key can be overridden with `key.path=value` (value parsed as JSON, else a raw string).
Every user mistake is a `ConfigError` naming the full key path, the bad value and what is allowed.

One idea per module, none imports jax (the CLI validates before any device work):
``schema`` the key tree of the file; ``values`` value checks; ``dtypes`` the dtype vocabulary;
``video_infinity`` the method's knobs; ``run`` one generation run; ``load`` files and overrides.
How many devices run it is decided next to the mesh (``vinf_jax/parallel/devices.py``).
"""

from vinf_jax.config.dtypes import DEFAULT_DTYPE, DTYPES, compute_dtype, normalize_dtype
from vinf_jax.config.load import load_config, to_dict
from vinf_jax.config.run import DistributedConfig, GenerateConfig, PipeConfig
from vinf_jax.config.values import ConfigWarning
from vinf_jax.config.video_infinity import (AttnConfig, ConvLayerConfig, GroupNormConfig, Phase,
                                            VideoInfinityConfig)

__all__ = [
    "AttnConfig", "ConfigWarning", "ConvLayerConfig", "DEFAULT_DTYPE", "DTYPES", "DistributedConfig",
    "GenerateConfig", "GroupNormConfig", "Phase", "PipeConfig", "VideoInfinityConfig", "compute_dtype",
    "load_config", "normalize_dtype", "to_dict",
]
