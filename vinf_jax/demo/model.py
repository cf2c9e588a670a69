"""``model: "tiny-demo"``: the shipped diffusers-layout weights, converted like downloaded ones.

The package carries the trained model as a diffusers text-to-video pipeline folder
(``vinf_jax/demo/weights``, written by ``python -m vinf_jax.demo.train``). On first use it goes
through ``vinf_jax.convert.videocrafter2.convert`` -- the converter a user runs on real weights -- into the
user's cache (``$VINF_CACHE``, else ``$XDG_CACHE_HOME/vinf_jax``, else ``~/.cache/vinf_jax``), in a
folder named after the weights' SHA-256, so new weights never meet a stale conversion. Later runs
load the converted folder directly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vinf_jax.cache import cache_dir
from vinf_jax.errors import ConfigError, ConversionError, VinfError

NAME = "tiny-demo"
WEIGHTS = Path(__file__).resolve().parent / "weights"




def weights_digest(folder: Path = WEIGHTS) -> str:
    """SHA-256 over the shipped files (names and bytes), first 16 hex digits."""
    h = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise ConversionError(f"{NAME}: no weights in {folder} (the package was installed without its data)")
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def checkpoint_path(cache: Path | None = None) -> Path:
    """The converted checkpoint folder of the shipped weights, converting them on first use."""
    from vinf_jax.checkpoint import MARKER

    out = (cache or cache_dir()) / f"{NAME}-{weights_digest()}"
    if (out / MARKER).is_file():
        return out
    import logging

    from vinf_jax.convert.videocrafter2 import convert

    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax logs routine notes as warnings
    try:
        convert(None, out, base=WEIGHTS)
    except VinfError:
        if not (out / MARKER).is_file():  # not another process finishing the same conversion first
            raise
    except OSError as e:
        raise ConfigError(f"model: {NAME} is converted on first use into {out}, which cannot be written "
                          f"({e}); set VINF_CACHE to a writable folder") from None
    return out
