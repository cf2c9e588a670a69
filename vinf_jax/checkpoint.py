"""A vinf_jax checkpoint: one self-describing folder holding every component.

Layout (written by ``python -m convert.videocrafter2``)::

    vinf_jax_checkpoint.json     format version, components, source and library versions
    unet/config.json  unet/params/           (orbax)
    text_encoder/config.json  text_encoder/params/
    vae/config.json  vae/params/
    tokenizer/                   the CLIPTokenizer files, as saved by transformers
    scheduler/scheduler_config.json

Parameters are stored as float32 nested dicts with string keys (list indices as "0", "1", ...), and
are restored against the abstract tree of the model built from the stored config, so a folder of
another architecture fails at load with the component named.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np

from vinf_jax.errors import CheckpointError

MARKER = "vinf_jax_checkpoint.json"
FORMAT = 1


def _stringify(tree):
    if isinstance(tree, dict):
        return {str(k): _stringify(v) for k, v in tree.items()}
    return tree


def _intify(tree):
    if isinstance(tree, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): _intify(v) for k, v in tree.items()}
    return tree


def save_params(folder: str | os.PathLike, params: dict) -> None:
    """Write a nested pure-dict of arrays to ``folder/params`` with orbax."""
    import orbax.checkpoint as ocp

    path = Path(folder).absolute() / "params"
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, _stringify(jax.tree.map(np.asarray, params)))
    ckptr.wait_until_finished()


def load_params(folder: str | os.PathLike, abstract: dict, what: str) -> dict:
    """Restore ``folder/params`` against ``abstract`` (a pure dict of ShapeDtypeStructs)."""
    import orbax.checkpoint as ocp

    path = Path(folder).absolute() / "params"
    if not path.is_dir():
        raise CheckpointError(f"{what}: parameter folder {path} is missing")
    target = _stringify(jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, np.float32), abstract))
    try:
        restored = ocp.StandardCheckpointer().restore(path, target)
    except Exception as e:  # orbax raises many types; the user needs the folder and the reason
        raise CheckpointError(f"{what}: cannot restore parameters from {path}: {type(e).__name__}: {e}") from None
    return _intify(restored)


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{what}: {path} is missing") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{what}: {path} is unreadable: {e}") from None


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_folder(out: str | os.PathLike):
    """Context manager: build a folder under a temporary name beside ``out``, rename when done."""
    import contextlib

    @contextlib.contextmanager
    def cm():
        out_path = Path(out).absolute()
        if out_path.exists():
            raise CheckpointError(f"output folder {out_path} already exists; choose a new --out")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.partial-", dir=out_path.parent))
        try:
            yield tmp
            os.replace(tmp, out_path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    return cm()
