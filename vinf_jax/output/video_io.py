"""Output files: mp4 (imageio-ffmpeg), JSON sidecar, optional raw frames; atomic and never overwritten.

Every file is written under a temporary name in the destination folder and renamed into place, so
an interrupted run leaves no file that looks finished (the temporaries are removed on the way out;
those of a run killed outright, which cannot clean up, are swept by the next run: ``sweep_stale_temps``).
Names are claimed when the finished files are published, not when a run starts: if another run took
the index meanwhile, the next free one is used, so runs sharing ``base_path`` all keep their videos.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import socket
import time
import uuid
import warnings
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from vinf_jax.output import jsonfile
from vinf_jax.errors import ConfigError

_INDEXED = re.compile(r"(\d+)_")


@dataclasses.dataclass(frozen=True)
class OutputName:
    """Where a run's files go: ``folder/<index>_<frames>_<steps>_<fps>`` with the first index above
    every used one (as the original names its videos), or an explicit stem (then ``<stem>_1``,
    ``<stem>_2``... if it is taken by the time the files are published)."""

    folder: Path
    tail: str | None = None   # "<frames>_<steps>_<fps>" of an indexed name
    stem: str | None = None   # an explicit name

    @classmethod
    def indexed(cls, base_path, frames: int, steps: int, fps) -> "OutputName":
        return cls(Path(base_path), tail=f"{frames}_{steps}_{fps:g}")

    @classmethod
    def explicit(cls, path) -> "OutputName":
        """``path`` with or without ``.mp4``."""
        p = Path(path)
        return cls(p.parent, stem=p.with_suffix("").name if p.suffix == ".mp4" else p.name)

    def first(self) -> Path:
        """The stem that would be used now (for messages before the run)."""
        return next(self.candidates())

    def candidates(self) -> Iterator[Path]:
        if self.stem is not None:
            yield self.folder / self.stem
            for i in range(1, 1 << 20):
                yield self.folder / f"{self.stem}_{i}"
            return
        last = -1
        while True:  # rescanned after every lost race: another run may have taken more than one index
            used = [int(m.group(1)) for p in self.folder.glob("*.mp4") if (m := _INDEXED.match(p.name))] \
                if self.folder.is_dir() else []
            last = max(max(used, default=-1) + 1, last + 1)
            yield self.folder / f"{last}_{self.tail}"


def output_stem(base_path: str | Path, file_name: str | None, frames: int, steps: int, fps) -> Path:
    """The stem a run would get now; an explicit ``file_name`` that exists is refused up front."""
    if file_name:
        stem = OutputName.explicit(Path(base_path) / file_name).first()
        if stem.with_suffix(".mp4").exists():
            raise ConfigError(f"pipe_configs.file_name: {stem.with_suffix('.mp4')} exists; outputs are never overwritten")
        return stem
    return OutputName.indexed(base_path, frames, steps, fps).first()


_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
_TEMP = re.compile(r"\.vinf-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}\.partial")


def temp_path(folder: Path, suffix: str) -> Path:
    """A hidden, unique temporary name in ``folder`` (the final name is chosen at publication),
    naming the machine and process that write it (for ``sweep_stale_temps``)."""
    return folder / f".vinf-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{suffix}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def sweep_stale_temps(folder: Path, min_age_s: float = 3600.0) -> list[Path]:
    """Remove the temporaries of runs killed outright (SIGKILL, the OOM killer: no clean-up ran).
    Only files written on this machine by a process that no longer exists and untouched for
    ``min_age_s`` (a folder shared across machines or containers keeps the others' files)."""
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for p in folder.glob(".vinf-*.partial*"):
        m = _TEMP.match(p.name)
        try:
            if m and m["host"] == _HOST and not _alive(int(m["pid"])) and now - p.stat().st_mtime >= min_age_s:
                p.unlink()
                removed.append(p)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    return removed


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """Serialise publication between runs sharing ``folder`` (flock on the folder itself: no lock
    file is left behind). Where folders cannot be locked, the no-overwrite link alone still keeps
    every video, but two runs may then share an index under different names."""
    fd = None
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError):
        pass
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _place(tmp: Path, final: Path) -> bool:
    """Give ``tmp`` the name ``final`` unless it exists (atomic, never overwrites); False if taken."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    except OSError as e:  # no hard links here (some network or FAT folders): claim, then replace
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        try:
            os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        os.replace(tmp, final)
        return True
    tmp.unlink()
    return True


def publish(temps: Mapping[str, Path], name: OutputName) -> Path:
    """Rename finished temporaries ``{".mp4": tmp, ".json": tmp, ...}`` to the first free stem of
    ``name``; returns it. The mp4 claims the stem; a stem whose companion names are taken is skipped."""
    suffixes = [".mp4"] + [s for s in temps if s != ".mp4"]
    name.folder.mkdir(parents=True, exist_ok=True)
    with _folder_lock(name.folder):
        for stem in name.candidates():
            if any(stem.with_suffix(s).exists() for s in suffixes[1:]):
                continue
            if not _place(temps[".mp4"], stem.with_suffix(".mp4")):
                continue
            for s in suffixes[1:]:
                if not _place(temps[s], stem.with_suffix(s)):  # appeared since the check: keep it beside
                    os.replace(temps[s], stem.with_name(f"{stem.name}.{uuid.uuid4().hex[:6]}{s}"))
            return stem
    raise AssertionError("unreachable")


@contextlib.contextmanager
def atomic_write(path: Path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        yield tmp
        if not _place(tmp, path):
            raise ConfigError(f"{path} appeared while writing; outputs are never overwritten")
    finally:
        if tmp.exists():
            tmp.unlink()


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames in [0, 1] -> uint8 (round half up); ``pipeline`` does the same on the devices."""
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)


def open_mp4(path: Path, width: int, height: int, fps: float):
    """A started imageio-ffmpeg frame writer: ``send`` uint8 (n, H, W, 3) blocks, then ``close``.
    H.264, yuv420p (plays everywhere)."""
    import imageio_ffmpeg

    with warnings.catch_warnings():
        # ffmpeg runs as a subprocess; the fork happens before any JAX thread touches the child
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=float(fps), codec="libx264",
                                             pix_fmt_out="yuv420p", macro_block_size=1, output_params=["-f", "mp4"])
        writer.send(None)
    return writer


def mp4_complete(path: Path) -> bool:
    """The file is a whole mp4: its top-level boxes tile it exactly and include ``moov`` and ``mdat``.
    ffmpeg exits without an error we can see when it cannot finish the file (a full disk), so the
    writer checks this before publishing."""
    size, pos, kinds = path.stat().st_size, 0, set()
    with open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            head = f.read(16)
            n = int.from_bytes(head[:4], "big") if len(head) >= 8 else 0
            if n == 1 and len(head) == 16:  # 64-bit size
                n = int.from_bytes(head[8:16], "big")
            elif n == 0 and len(head) >= 8:  # runs to the end of the file
                n = size - pos
            if n < 8 or pos + n > size:
                return False
            kinds.add(head[4:8])
            pos += n
    return {b"moov", b"mdat"} <= kinds


def disk_full(folder: Path, margin: int = 1 << 20) -> bool:
    """Less than ``margin`` bytes can still be written in ``folder`` (root may use the reserved blocks)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    free = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return free * st.f_frsize < margin


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """frames (T, H, W, 3) float in [0, 1] -> H.264 mp4 at ``fps``, all at once (the whole video in
    memory; ``VideoInfinityPipeline.export_video`` streams instead)."""
    t, h, w, _ = frames.shape
    data = to_uint8(frames)
    with atomic_write(path) as tmp:
        writer = open_mp4(tmp, w, h, fps)
        for frame in data:
            writer.send(np.ascontiguousarray(frame))
        writer.close()


def write_json(path: Path, data: dict) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(jsonfile.dumps(data))


def write_npy(path: Path, frames: np.ndarray) -> None:
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, frames)


def keep_latents(name: OutputName, latents: np.ndarray) -> Path:
    """Save finished latents as ``<stem>.latents.npy`` at the first free stem of ``name`` (the video
    could not be made from them; ``python -m vinf_jax.generate --latents`` decodes them later)."""
    name.folder.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(name.folder, ".npy")
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(latents, np.float32))
        with _folder_lock(name.folder):
            for stem in name.candidates():
                final = stem.with_name(f"{stem.name}.latents.npy")
                if not stem.with_suffix(".mp4").exists() and _place(tmp, final):
                    return final
    finally:
        if tmp.exists():
            tmp.unlink()
    raise AssertionError("unreachable")


def read_mp4(path: Path) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of an mp4 (tests and users checking an output)."""
    import imageio_ffmpeg

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
    w, h = meta["size"]
    return np.stack([np.frombuffer(fr, np.uint8).reshape(h, w, 3) for fr in reader])
