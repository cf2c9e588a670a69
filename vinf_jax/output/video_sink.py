"""VideoSink: chunks of frames stream into an mp4 (and a .npy) while the devices make the next ones.

A writer thread feeds imageio-ffmpeg's frame writer (ffmpeg encodes in its own process) and appends
raw frames to the .npy, so the caller can wait for the next chunk meanwhile. At most ``depth``
chunks wait in the queue: host memory is a few chunks whatever the video's length. Files live
under hidden temporary names until :meth:`publish`; leaving the ``with`` block any other way (an
error, Ctrl-C) stops ffmpeg and deletes them.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from vinf_jax.output import jsonfile, video_io


class _Abort(BaseException):
    """Thrown into the ffmpeg writer to kill ffmpeg at once (imageio-ffmpeg's policy for BaseException)."""


class VideoSink:
    """``with VideoSink(folder, T, H, W, fps) as sink: sink.put(u8_chunk); ...; sink.publish(name)``."""

    def __init__(self, folder, frames: int, height: int, width: int, fps: float, *, npy: bool = False,
                 depth: int = 2, progress: Callable[[int], None] | None = None):
        self.folder = Path(folder)
        self.shape = (int(frames), int(height), int(width), 3)
        self.fps, self.npy, self.progress = float(fps), npy, progress
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._temps: dict[str, Path] = {}
        self._error: BaseException | None = None
        self._abort = False
        self._lock = threading.Lock()
        self.written = 0          # frames written so far
        self.held = 0             # chunks handed over and not yet written
        self.max_held = 0
        self.write_s = 0.0        # time the writer thread spent writing

    # -- lifetime --------------------------------------------------------------------------------
    def __enter__(self) -> "VideoSink":
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._temps[".mp4"] = video_io.temp_path(self.folder, ".mp4")
            self._mp4 = video_io.open_mp4(self._temps[".mp4"], self.shape[2], self.shape[1], self.fps)
            self._npy = None
            if self.npy:
                # Appended in order with plain writes: a memory map's dirty pages would count as this
                # process's memory until written back, and the whole video would sit in it.
                self._temps[".npy"] = video_io.temp_path(self.folder, ".npy")
                self._npy = open(self._temps[".npy"], "wb")
                np.lib.format.write_array_header_2_0(self._npy, {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                    "shape": self.shape})
            self._thread = threading.Thread(target=self._run, name="vinf-video-writer", daemon=True)
            self._thread.start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._temps:  # not published: an error or an interrupt
            self._stop(abort=True)
            self._cleanup()
        return False

    # -- the caller's side -----------------------------------------------------------------------
    def put(self, frames: np.ndarray, raw: np.ndarray | None = None) -> None:
        """Hand over uint8 frames (n, H, W, 3) (and, with ``npy``, their float32 values); blocks
        while ``depth`` chunks are waiting."""
        assert frames.dtype == np.uint8 and frames.shape[1:] == self.shape[1:], (frames.dtype, frames.shape)
        assert (raw is not None) == self.npy
        with self._lock:
            self.held += 1
            self.max_held = max(self.max_held, self.held)
        while True:
            self._raise_writer_error()
            try:
                self._q.put((frames, raw), timeout=0.1)  # short waits: Ctrl-C and writer errors get through
                return
            except queue.Full:
                continue

    def publish(self, name: video_io.OutputName, sidecar: dict | None = None) -> Path:
        """Finish the files and give them their final names (see ``video_io.publish``); returns the stem."""
        self.finish()
        if sidecar is not None:
            self._temps[".json"] = video_io.temp_path(self.folder, ".json")
            self._temps[".json"].write_text(jsonfile.dumps(sidecar))
        stem = video_io.publish(self._temps, name)
        self._temps = {}
        return stem

    def finish(self) -> None:
        """Wait until every frame is written and ffmpeg has closed the file (still under its temporary name)."""
        self._stop(abort=False)
        self._raise_writer_error()
        if self.written != self.shape[0]:
            raise RuntimeError(f"video writer: {self.written} of {self.shape[0]} frames were written")

    # -- the writer thread -----------------------------------------------------------------------
    def _run(self):
        try:
            while True:
                item = self._q.get()
                if item is None or self._abort:
                    return
                frames, raw = item
                t0 = time.perf_counter()
                self._mp4.send(np.ascontiguousarray(frames))
                if self._npy is not None:
                    self._npy.write(np.ascontiguousarray(raw, np.float32).data)
                self.write_s += time.perf_counter() - t0
                self.written += frames.shape[0]
                with self._lock:
                    self.held -= 1
                if self.progress is not None:
                    self.progress(frames.shape[0])
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self._error = e

    def _stop(self, abort: bool):
        """End the writer thread; close ffmpeg (waiting for the encoder) or kill it (``abort``)."""
        if getattr(self, "_thread", None) is None:
            return
        self._abort = abort
        if abort:
            while True:  # make room for the end marker
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    break
        while self._thread.is_alive():  # the end marker (a dead writer takes nothing)
            try:
                self._q.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join(timeout=None if not abort else 30)
        self._thread = None
        try:
            if abort or self._error is not None:
                try:
                    self._mp4.throw(_Abort())
                except (_Abort, StopIteration):
                    pass
                except ValueError:  # still inside a write after 30 s: the process exits anyway
                    pass
            else:
                self._mp4.close()  # waits until ffmpeg has written the file
                self._check_mp4()
        finally:
            if self._npy is not None:
                self._npy.close()

    def _check_mp4(self):
        """ffmpeg that could not finish the file exits quietly: a full disk becomes ENOSPC here."""
        tmp = self._temps[".mp4"]
        if not video_io.mp4_complete(tmp):
            if video_io.disk_full(self.folder):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.folder))
            raise RuntimeError(f"video writer: ffmpeg left an incomplete mp4 ({tmp}); see its message above")

    def _raise_writer_error(self):
        if isinstance(self._error, OSError) and video_io.disk_full(self.folder):  # ffmpeg's pipe broke
            self._error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.folder))
        if self._error is not None:
            raise RuntimeError(f"video writer failed: {self._error}") from self._error

    def _cleanup(self):
        for tmp in self._temps.values():
            tmp.unlink(missing_ok=True)
        self._temps = {}
