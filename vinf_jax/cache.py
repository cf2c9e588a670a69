"""vinf_jax's cache folder: ``$VINF_CACHE``, else ``$XDG_CACHE_HOME/vinf_jax``, else ``~/.cache/vinf_jax``.
It holds JAX's compiled programs (``xla/``) and the converted tiny-demo checkpoint."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("VINF_CACHE"):
        return Path(os.environ["VINF_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vinf_jax"
