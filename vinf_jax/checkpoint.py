"""A vinf_jax checkpoint: one self-describing folder holding every component. Storage only: this module
reads and writes config dicts and parameter trees and never builds a model (``vinf_jax.loading`` does).

Layout (written by the converter, ``vinf_jax.convert``)::

    vinf_jax_checkpoint.json     format version, components, source and library versions
    unet/config.json  unet/params/  unet/params.sha256.json
    text_encoder/config.json  text_encoder/params/  text_encoder/params.sha256.json
    vae/config.json  vae/params/  vae/params.sha256.json
    tokenizer/                   the CLIPTokenizer files, copied verbatim from the pipeline (LVDM checkpoints:
                                 OpenCLIP's BPE merges and a tokenizer_config.json naming OpenCLIPTokenizer)
    scheduler/scheduler_config.json   copied verbatim from the pipeline

A UNet-only checkpoint (``--unet`` without ``--base``) has just ``unet/`` and lists only it.

Parameters are float32 nested dicts with string keys (list indices as "0", "1", ...), saved by orbax
as one zarr array per parameter (no OCDBT, whose file names are random), so converting the same
weights twice gives byte-identical array files. ``params.sha256.json`` records the size and SHA-256
of every file under ``params/`` except orbax's bookkeeping (``_CHECKPOINT_METADATA`` holds
timestamps, ``commit_success.txt`` the path written to): zarr does not notice a garbled chunk, so
the checksums are how a damaged folder is caught. Parameters are restored against the abstract
tree of the model built from the stored config, so a folder of another architecture fails at load
with the parameter named.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from vinf_jax.output import jsonfile
from vinf_jax.config.load import CHECKPOINT_MARKER
from vinf_jax.errors import CheckpointError

MARKER = CHECKPOINT_MARKER  # spelt once, in config (which checks model folders before jax starts)
FORMAT = 2  # 2: non-OCDBT orbax params with params.sha256.json; text encoder, VAE, tokenizer, scheduler
CHECKSUMS = "params.sha256.json"
COMPONENTS = ("unet", "text_encoder", "vae", "tokenizer", "scheduler")
_ORBAX_BOOKKEEPING = ("_CHECKPOINT_METADATA", "commit_success.txt")


def _stringify(tree):
    if isinstance(tree, dict):
        return {str(k): _stringify(v) for k, v in tree.items()}
    return tree


def _intify(tree):
    if isinstance(tree, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): _intify(v) for k, v in tree.items()}
    return tree


def _flat(tree, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _param_files(params_dir: Path) -> dict[str, list]:
    """{relative path: [size, sha256]} of every data/metadata file orbax wrote, bookkeeping excluded."""
    return {p.relative_to(params_dir).as_posix(): [p.stat().st_size, _sha256(p)]
            for p in sorted(params_dir.rglob("*")) if p.is_file() and p.name not in _ORBAX_BOOKKEEPING}


def save_params(folder: str | os.PathLike, params: dict) -> None:
    """Write a nested pure-dict of arrays to ``folder/params`` with orbax, and its checksums."""
    import orbax.checkpoint as ocp

    path = Path(folder).absolute() / "params"
    tree = _stringify(_numpy_tree(params))
    with ocp.Checkpointer(ocp.StandardCheckpointHandler(use_ocdbt=False)) as ckptr:
        ckptr.save(path, args=ocp.args.StandardSave(tree))
    write_json(path.parent / CHECKSUMS, {"files": _param_files(path)})


def _numpy_tree(tree):
    if isinstance(tree, dict):
        return {k: _numpy_tree(v) for k, v in tree.items()}
    return np.asarray(tree, np.float32)


def verify_params(folder: str | os.PathLike, what: str) -> None:
    """Every file listed in ``folder/params.sha256.json`` exists under ``params/`` with its size and hash."""
    folder = Path(folder)
    manifest = read_json(folder / CHECKSUMS, what).get("files")
    if not isinstance(manifest, dict) or not manifest:
        raise CheckpointError(f"{what}: {folder / CHECKSUMS} lists no files")
    problems = []
    for rel, (size, digest) in sorted(manifest.items()):
        p = folder / "params" / rel
        if not p.is_file():
            problems.append(f"{p} is missing")
        elif p.stat().st_size != size:
            problems.append(f"{p} has {p.stat().st_size} bytes, expected {size} (truncated?)")
        elif _sha256(p) != digest:
            problems.append(f"{p} is corrupt (SHA-256 differs from {CHECKSUMS})")
    if problems:
        raise CheckpointError(f"{what}: damaged parameter files (convert again): " + "; ".join(problems))


def _check_tree(path: Path, found: dict, abstract: dict, what: str) -> None:
    """One error naming every missing, unexpected and mis-shaped parameter."""
    want = {k: tuple(v.shape) for k, v in _flat(abstract).items()}
    have = {k: tuple(v.shape) for k, v in _flat(found).items()}
    missing, unexpected = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
    shapes = sorted(f"{k}: stored {have[k]}, config expects {want[k]}" for k in want.keys() & have.keys()
                    if have[k] != want[k])
    problems = [f"{len(v)} {name}: " + "; ".join(v[:10]) + (f"; ... ({len(v) - 10} more)" if len(v) > 10 else "")
                for name, v in (("missing parameter(s)", missing), ("unexpected parameter(s)", unexpected),
                                ("shape mismatch(es)", shapes)) if v]
    if problems:
        raise CheckpointError(f"{what}: parameters in {path} do not fit {path.parent / 'config.json'} "
                              "(a checkpoint of another architecture?): " + ". ".join(problems))


def load_params(folder: str | os.PathLike, abstract: dict, what: str, *, verify: bool = True) -> dict:
    """Restore ``folder/params`` against ``abstract`` (a pure dict of ShapeDtypeStructs).

    ``verify`` checks the files against ``params.sha256.json`` first (reads every byte once).
    """
    import jax
    import orbax.checkpoint as ocp

    path = Path(folder).absolute() / "params"
    if not path.is_dir():
        raise CheckpointError(f"{what}: parameter folder {path} is missing")
    if verify:
        verify_params(path.parent, what)
    target = _stringify(jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, np.float32), abstract))
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
        try:
            meta = ckptr.metadata(path)
            meta = getattr(getattr(meta, "item_metadata", meta), "tree", meta)
        except Exception as e:  # orbax raises many types; the user needs the folder and the reason
            raise CheckpointError(f"{what}: cannot read parameter metadata in {path}: {type(e).__name__}: {e}") from None
        _check_tree(path, meta, target, what)
        try:
            restored = ckptr.restore(path, args=ocp.args.StandardRestore(target))
        except Exception as e:
            raise CheckpointError(f"{what}: cannot restore parameters from {path}: {type(e).__name__}: {e}") from None
    _check_tree(path, restored, target, what)  # orbax returns the stored shape where it differs
    return _intify(restored)


def read_json(path: Path, what: str, error: type[Exception] = CheckpointError) -> dict:
    """A JSON object from ``path``; any problem is an ``error`` naming ``what`` and the file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{what}: {path} is missing") from None
    except (OSError, ValueError) as e:
        raise error(f"{what}: {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise error(f"{what}: {path} does not hold a JSON object")
    return data


def write_json(path: Path, data: dict) -> None:
    """Checkpoint JSON files: sorted keys, so converting twice gives identical files."""
    jsonfile.write_json(path, data, sort_keys=True)


def config_to_dict(cfg) -> dict:
    """A frozen config dataclass as JSON-ready data (tuples as lists); ``type(cfg).from_dict`` inverts it."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


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


# ----------------------------------------------------------------------------------------- read


@dataclasses.dataclass(frozen=True)
class StoredCheckpoint:
    """A checked checkpoint folder: component configs as dicts, parameters read on request.
    ``vinf_jax.loading.load_checkpoint`` builds the models from it."""

    path: Path
    components: tuple[str, ...]  # as listed in the marker
    configs: dict  # {"unet": {...}, "text_encoder": {...}, "vae": {...}} for the components present
    scheduler_config: dict | None  # diffusers scheduler_config.json, verbatim
    info: dict  # the marker: format, components, source, versions

    def load_params(self, name: str, abstract: dict) -> dict:
        """The parameters of component ``name`` restored against ``abstract`` (checksums were verified)."""
        return load_params(self.path / name, abstract, name, verify=False)


def _read_component(root: Path, name: str, verify: bool) -> dict:
    """The component's config dict, after checking its folder and (``verify``) its parameter files."""
    folder = root / name
    if not folder.is_dir():
        raise CheckpointError(f"{name}: component folder {folder} is missing (listed in {root / MARKER})")
    raw = read_json(folder / "config.json", name)
    if not (folder / "params").is_dir():
        raise CheckpointError(f"{name}: parameter folder {folder / 'params'} is missing")
    if verify:
        verify_params(folder, name)
    return raw


def open_checkpoint(path: str | os.PathLike, *, verify: bool = True) -> StoredCheckpoint:
    """Check the folder ``path`` written by the converter and read its marker, configs and scheduler.

    Raises :class:`CheckpointError` naming the file or folder when the marker, a component, a config
    or a parameter file is missing or damaged. ``verify=False`` skips the SHA-256 check of the
    parameter files (a few seconds at full size).
    """
    root = Path(path).absolute()
    if not root.is_dir():
        raise CheckpointError(f"checkpoint folder {root} does not exist")
    if not (root / MARKER).is_file():
        raise CheckpointError(f"{root} has no {MARKER}, so it is not a (complete) vinf_jax checkpoint; "
                              "convert one with `python -m convert.videocrafter2` (or `vinf-convert`)")
    info = read_json(root / MARKER, "checkpoint marker")
    if info.get("format") != FORMAT:
        raise CheckpointError(f"{root / MARKER}: format {info.get('format')!r}, but this vinf_jax reads "
                              f"format {FORMAT}; convert the weights again")
    components = info.get("components")
    if (not isinstance(components, list) or "unet" not in components
            or any(c not in COMPONENTS for c in components)):
        raise CheckpointError(f"{root / MARKER}: components {components!r} must list 'unet' and only {COMPONENTS}")
    configs = {name: _read_component(root, name, verify) for name in ("unet", "text_encoder", "vae")
               if name in components}
    scheduler = (read_json(root / "scheduler" / "scheduler_config.json", "scheduler")
                 if "scheduler" in components else None)
    if "tokenizer" in components and not (root / "tokenizer").is_dir():
        raise CheckpointError(f"tokenizer: folder {root / 'tokenizer'} is missing")
    return StoredCheckpoint(path=root, components=tuple(components), configs=configs,
                            scheduler_config=scheduler, info=info)
