"""Output files: mp4 (imageio-ffmpeg), JSON sidecar, optional raw frames; atomic and never overwritten.

Every file is written under a temporary name in the destination folder and renamed into place, so
an interrupted run leaves no file that looks finished (the temporaries are removed on the way out).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np

from vinf_jax.errors import ConfigError


def output_stem(base_path: str | Path, file_name: str | None, frames: int, steps: int, fps) -> Path:
    """``base_path/<index>_<frames>_<steps>_<fps>`` with the next unused index (as the original
    names its videos), or ``base_path/<file_name>`` (its extension dropped), which must not exist."""
    base = Path(base_path)
    if file_name:
        stem = base / Path(file_name).with_suffix("").name if Path(file_name).suffix == ".mp4" else base / file_name
        if stem.with_suffix(".mp4").exists():
            raise ConfigError(f"pipe_configs.file_name: {stem.with_suffix('.mp4')} exists; outputs are never overwritten")
        return stem
    used = [int(m.group(1)) for p in base.glob("*.mp4") if (m := re.match(r"(\d+)_", p.name))] if base.is_dir() else []
    return base / f"{max(used, default=-1) + 1}_{frames}_{steps}_{fps:g}"


@contextlib.contextmanager
def atomic_write(path: Path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        yield tmp
        if path.exists():
            raise ConfigError(f"{path} appeared while writing; outputs are never overwritten")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """frames (T, H, W, 3) float in [0, 1] -> H.264 mp4 at ``fps`` (yuv420p: plays everywhere)."""
    import imageio_ffmpeg

    t, h, w, _ = frames.shape
    data = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
    with atomic_write(path) as tmp, warnings.catch_warnings():
        # ffmpeg runs as a subprocess; the fork happens before any JAX thread touches the child
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=float(fps), codec="libx264", pix_fmt_out="yuv420p",
                                             macro_block_size=1, output_params=["-f", "mp4"])
        writer.send(None)
        for frame in data:
            writer.send(np.ascontiguousarray(frame))
        writer.close()


def write_json(path: Path, data: dict) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_npy(path: Path, frames: np.ndarray) -> None:
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, frames)


def read_mp4(path: Path) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of an mp4 (tests and users checking an output)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return np.stack([np.frombuffer(fr, np.uint8).reshape(h, w, 3) for fr in reader])
