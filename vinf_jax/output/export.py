"""The output stage: latents on the devices -> frames in chunks -> mp4 (and .npy, sidecar) on process 0.

Devices decode chunk k+1.. while the host writes chunk k (JAX dispatches asynchronously; at most
``ahead`` chunks are queued on the devices and ``depth`` on the host), frames are converted to
uint8 on the devices, and only process 0 receives them (``parallel/stream.py``). Host memory is a
few chunks of D x c frames, whatever the video's length. If the devices run out of memory on the
first chunk, the chunk is halved (down to one frame per device) and the export starts again: nothing
was written or shown yet, and the finished latents are not lost to a decode size. Used by
``VideoInfinityPipeline.export_video`` and the CLI.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from vinf_jax.output import video_io
from vinf_jax.errors import ConfigError, VinfWarning, is_out_of_memory
from vinf_jax.parallel.stream import TRANSFERS, ChunkPlan, chunk_layout, fetch_chunk, wait_ready


@dataclasses.dataclass
class ExportResult:
    path: Path | None          # the mp4 (None on processes other than 0)
    frames: int
    chunks: int                # chunks of devices x frames_per_chunk frames
    frames_per_chunk: int      # per device
    seconds: float             # decode + write, until the files are in place
    wait_s: float              # time the host waited for the devices
    write_s: float             # time the writer thread spent handing frames to ffmpeg / the npy
    max_chunks_held: int       # chunks on the host at once, at most (process 0)
    bytes_to_host: int         # frame bytes this process copied from its devices


def device_uint8(y: jax.Array) -> jax.Array:
    """Frames in [0, 1] -> uint8 exactly as ``video_io.to_uint8`` does on the host: the barrier keeps
    XLA from fusing ``y * 255 + 0.5`` into one multiply-add, whose single rounding can differ."""
    return (jax.lax.optimization_barrier(y * 255) + 0.5).astype(jnp.uint8)


_frames_first = jax.jit(lambda a: jnp.transpose(a[0], (1, 2, 3, 0)).astype(jnp.float32))


def frames_first(pipe, latents):
    """Latents (1, C, T, h, w) -> (T, h, w, C): on the devices for a mesh array, else on the host."""
    if len(np.shape(latents)) != 5 or np.shape(latents)[0] != 1 \
            or np.shape(latents)[1] != pipe.vae.config.latent_channels:
        raise ConfigError(f"latents: expected shape (1, {pipe.vae.config.latent_channels}, T, h, w), "
                          f"got {tuple(np.shape(latents))}")
    if isinstance(latents, jax.Array):
        if set(latents.sharding.device_set) <= set(pipe.mesh.devices.flat):
            return _frames_first(latents)
        latents = np.asarray(latents)  # elsewhere (e.g. one default device): via the host
    return np.transpose(np.asarray(latents, np.float32)[0], (1, 2, 3, 0))


def frame_chunks(pipe, latents, chunk: int = 8, ahead: int = 2, raw: bool = False
                 ) -> tuple[ChunkPlan, Iterator[tuple[np.ndarray, ...] | None]]:
    """Plan and iterator over the video's chunks in order: on process 0 ``(uint8,)`` or, with
    ``raw``, ``(uint8, float32)`` arrays (D*c, H, W, 3); ``None`` on other processes (which must
    iterate too: every chunk is one collective program). Bad latents raise here, before any work."""
    x = frames_first(pipe, latents)
    plan = ChunkPlan.make(pipe.mesh, x.shape[0], chunk)
    y = chunk_layout(pipe.mesh, plan, x)
    del x
    run = pipe._chunk_program(plan, raw)
    receive = jax.process_index() == 0

    def chunks():
        pending = deque()

        def take():
            outs = pending.popleft()
            wait_ready(outs)
            return fetch_chunk(plan, outs) if receive else None

        for k in range(plan.num_chunks):
            pending.append(run(pipe._vae_params, y, np.int32(k)))
            if len(pending) > ahead:
                yield take()
        while pending:
            yield take()

    return plan, chunks()


def export_video(pipe, latents, path, fps: float = 8, *, save_frames: str | None = None,
                 sidecar: dict | Callable[[ExportResult], dict] | None = None, chunk: int = 8, ahead: int = 2,
                 progress: Callable[[int], None] | None = None,
                 observe: Callable[[np.ndarray], None] | None = None) -> ExportResult:
    """Decode ``latents`` on the mesh and stream the mp4 to ``path`` (see
    ``VideoInfinityPipeline.export_video``). ``observe(uint8 frames)`` sees every chunk in order
    on process 0 (the CLI's seam scores and contact sheet). ``path``: a file (``.mp4`` added if missing; if it
    exists by the end, ``<stem>_1``... is used) or a ``video_io.OutputName``. Out of device memory
    before the first chunk is out: ``chunk`` is halved and the export starts again (one warning)."""
    if save_frames not in (None, "npy"):
        raise ConfigError(f"save_frames={save_frames!r}: allowed null or 'npy'")
    name = path if isinstance(path, video_io.OutputName) else video_io.OutputName.explicit(path)
    while True:
        state = {}  # "plan" once planned, "out" once a chunk reached the host (then no retry)
        try:
            return _export(pipe, latents, name, fps, save_frames, sidecar, chunk, ahead, progress, observe, state)
        except Exception as e:
            plan = state.get("plan")
            if not is_out_of_memory(e) or plan is None or "out" in state or plan.per_chunk == 1:
                raise
            chunk = plan.per_chunk // 2
            warnings.warn(f"out of device memory decoding {plan.per_chunk} frames per device at once; "
                          f"decoding {chunk} at a time", VinfWarning, stacklevel=2)


def _export(pipe, latents, name, fps, save_frames, sidecar, chunk, ahead, progress, observe, state) -> ExportResult:
    t0 = time.perf_counter()
    before = dict(TRANSFERS)
    plan, chunks = frame_chunks(pipe, latents, chunk, ahead, raw=save_frames == "npy")
    state["plan"] = plan
    s = pipe.vae_scale_factor
    t, h, w = plan.frames, np.shape(latents)[3] * s, np.shape(latents)[4] * s
    wait = 0.0

    def result(path, sink=None):
        return ExportResult(path, t, plan.num_chunks, plan.per_chunk, time.perf_counter() - t0, wait,
                            sink.write_s if sink else 0.0, sink.max_held if sink else 0,
                            TRANSFERS["bytes"] - before["bytes"])

    if jax.process_index() != 0:
        for _ in chunks:
            state["out"] = True
        return result(None)
    from vinf_jax.output.video_sink import VideoSink

    with VideoSink(name.folder, t, h, w, fps, npy=save_frames == "npy", progress=progress) as sink:
        while True:
            t1 = time.perf_counter()
            out = next(chunks, None)
            wait += time.perf_counter() - t1
            if out is None:
                break
            state["out"] = True
            if observe is not None:
                observe(out[0])
            sink.put(*out)
        sink.finish()
        side = sidecar(result(None, sink)) if callable(sidecar) else sidecar
        stem = sink.publish(name, side)
    return result(stem.with_suffix(".mp4"), sink)
