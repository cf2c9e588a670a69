"""Where a model name becomes a loaded checkpoint: a converted folder, or one of the models that
ship inside the package.

``tiny-random`` is built in process (``vinf_jax.tiny``: the real architecture, random parameters
from a fixed seed); ``tiny-demo`` is the trained demo model, whose shipped weights are converted
into the cache on first use (``vinf_jax.demo.model``). Everything else is a folder written by the
converter (``loading.load_checkpoint``). The pipeline asks this module and knows no model by name.
(It sits above ``loading`` rather than in it: converting the demo weights uses ``vinf_jax.convert``,
which itself builds on ``loading``.)
"""

from __future__ import annotations

from pathlib import Path

from vinf_jax.config.load import TINY_DEMO, TINY_RANDOM
from vinf_jax.loading import LoadedCheckpoint, Model, load_checkpoint


def tiny_random(seed: int = 0) -> LoadedCheckpoint:
    """The ``tiny-random`` model: every component of the real architecture, random parameters."""
    from vinf_jax import tiny
    from vinf_jax.random_init import random_params

    models = {}
    for offset, (kind, cfg) in enumerate((("unet", tiny.UNET), ("text_encoder", tiny.TEXT), ("vae", tiny.VAE))):
        model = Model(kind, cfg)
        model.params = random_params(model.abstract, seed + offset)
        models[kind] = model
    return LoadedCheckpoint(path=Path(TINY_RANDOM), components=tuple(models) + ("tokenizer", "scheduler_config"),
                            tokenizer=tiny.WordTokenizer(), scheduler_config=tiny.SCHEDULER,
                            info={"format": TINY_RANDOM, "seed": seed}, **models)


def load_model(name_or_path: str | Path) -> LoadedCheckpoint:
    """``"tiny-random"``, ``"tiny-demo"`` or a converted checkpoint folder, loaded (checksums verified)."""
    if str(name_or_path) == TINY_RANDOM:
        return tiny_random()
    if str(name_or_path) == TINY_DEMO:  # the shipped trained model, through the real converter
        from vinf_jax.demo.model import checkpoint_path

        name_or_path = checkpoint_path()
    return load_checkpoint(name_or_path)
