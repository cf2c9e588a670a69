"""open_clip_torch 2.22.0 (VideoCrafter's pin) as a reference, without running its package __init__.

``import open_clip`` imports torchvision (for image transforms and ``utils.FrozenBatchNorm2d``),
which has no build for the CPU torch used here, and its declared dependencies would pull another
torch and protobuf < 4. So the package is installed with ``--no-deps`` and only the two modules we
compare with are loaded from its files under a private package name: ``tokenizer.py`` (needs ftfy,
regex, torch) and ``transformer.py`` (needs torch, and ``to_2tuple`` from ``utils.py``, which is
given here instead of importing ``utils.py`` and with it torchvision; ``to_2tuple`` is only used by
the vision tower).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

_PKG = "_open_clip_ref"
VERSION = "2.22.0"


def package_dir() -> Path:
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip_torch is not installed: pip install --no-deps open_clip_torch==2.22.0")
    return Path(list(spec.submodule_search_locations)[0])


def _load(name: str):
    full = f"{_PKG}.{name}"
    if full in sys.modules:
        return sys.modules[full]
    from importlib.metadata import version

    if version("open_clip_torch") != VERSION:  # 2.26+ is batch-first; VideoCrafter's loop expects LND
        raise ImportError(f"open_clip_torch {version('open_clip_torch')} installed; the reference is {VERSION}")
    root = package_dir()
    if _PKG not in sys.modules:
        pkg = types.ModuleType(_PKG)
        pkg.__path__ = [str(root)]
        sys.modules[_PKG] = pkg
        utils = types.ModuleType(f"{_PKG}.utils")
        utils.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
        sys.modules[utils.__name__] = utils
    spec = importlib.util.spec_from_file_location(full, root / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    spec.loader.exec_module(module)
    return module


def tokenizer_module():
    return _load("tokenizer")


def transformer_module():
    return _load("transformer")


def vocab_file() -> Path:
    return package_dir() / "bpe_simple_vocab_16e6.txt.gz"
