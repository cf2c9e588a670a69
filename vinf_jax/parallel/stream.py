"""Frames leave the devices in chunks, and only towards process 0.

A video of T frames on D devices is cut into chunks of D x c consecutive frames: in chunk k device
d holds frames ``k*D*c + d*c ... + c - 1``. The latents (small: 4 channels at 1/8 size) are laid
out that way once (:func:`chunk_layout`); then one compiled program per chunk (:func:`chunk_program`)
runs a per-frame function (the VAE decode) on every device and sends the results of devices that
process 0 does not own to devices it owns (``ppermute``, at most ceil(D / D0) - 1 rounds for D0
devices of process 0). Process 0 copies its own devices' buffers to the host (:func:`fetch_chunk`);
no other process copies frames to its host, and nobody gathers the whole video anywhere.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vinf_jax.errors import ConfigError
from vinf_jax.parallel.context import AXIS

# Frames this process copied from devices to its host: tests read it (only process 0 may count).
TRANSFERS = {"chunks": 0, "bytes": 0}


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """How T frames on a mesh are cut into chunks and funnelled to process 0."""

    devices: int                 # D, mesh size
    frames: int                  # T
    per_chunk: int               # c, frames per device per chunk
    receivers: tuple[int, ...]   # mesh positions owned by process 0
    senders: tuple[int, ...]     # the other positions, each sent to receivers[i % D0] in round i // D0

    @classmethod
    def make(cls, mesh: Mesh, frames: int, chunk: int) -> "ChunkPlan":
        d = mesh.size
        if frames % d:
            raise ConfigError(f"decode: {frames} frames do not split over {d} devices")
        devs = list(mesh.devices.flat)
        receivers = tuple(i for i, dev in enumerate(devs) if dev.process_index == 0)
        if not receivers:
            raise ConfigError("devices: process 0 writes the video, so the mesh must include one of its devices")
        senders = tuple(i for i, dev in enumerate(devs) if dev.process_index != 0)
        # the same chunk length as pipeline.decode's, so both decode identical batches of frames
        return cls(d, frames, math.gcd(frames // d, max(int(chunk), 1)), receivers, senders)

    @property
    def num_chunks(self) -> int:
        return self.frames // (self.devices * self.per_chunk)

    @property
    def rounds(self) -> int:
        return -(-len(self.senders) // len(self.receivers))

    def round_pairs(self, r: int) -> list[tuple[int, int]]:
        d0 = len(self.receivers)
        return [(self.senders[r * d0 + j], self.receivers[j]) for j in range(d0) if r * d0 + j < len(self.senders)]


@functools.lru_cache(maxsize=16)
def _reshaper(shape, sharding):
    return jax.jit(lambda a: a.reshape(shape), out_shardings=sharding)


def chunk_layout(mesh: Mesh, plan: ChunkPlan, x) -> jax.Array:
    """Frames-first array (T, ...) (host numpy, or on the mesh) -> (chunks, D, c, ...) with device d
    holding ``[:, d]``: the chunk-major layout above (an all-to-all of the small latents)."""
    shape = (plan.num_chunks, plan.devices, plan.per_chunk) + tuple(x.shape[1:])
    sharding = NamedSharding(mesh, P(None, AXIS))
    if isinstance(x, jax.Array):
        return _reshaper(shape, sharding)(x)
    host = np.asarray(x).reshape(shape)
    return jax.make_array_from_callback(shape, sharding, lambda idx: host[idx])


def chunk_program(mesh: Mesh, plan: ChunkPlan, fn):
    """``run(params, y, k)`` -> per-device outputs of chunk ``k`` (a traced index: one compile).

    ``fn(params, z)`` maps one device's c latent frames to a tuple of per-frame arrays (c, ...).
    Every output comes back as (D, 1 + rounds, c, ...) sharded over its first axis: slot 0 of
    position p is p's own frames; on a receiver, slot 1 + r holds the frames sent in round r.
    """

    def local(params, y, k):
        z = jax.lax.dynamic_index_in_dim(y, k, axis=0, keepdims=False)[0]
        outs = fn(params, z)
        res = []
        for o in outs:
            slots = [o] + [jax.lax.ppermute(o, AXIS, plan.round_pairs(r)) for r in range(plan.rounds)]
            res.append(jnp.stack(slots)[None])
        return tuple(res)

    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(None, AXIS), P()), out_specs=P(AXIS)))


def wait_ready(outs, poll_s: float = 0.02) -> None:
    """Wait in short sleeps so Ctrl-C reaches Python (``block_until_ready`` holds the thread in C++)."""
    import time

    for o in outs:
        while not o.is_ready():
            time.sleep(poll_s)


def fetch_chunk(plan: ChunkPlan, outs) -> tuple[np.ndarray, ...]:
    """On process 0: the chunk's frames in video order, one host array (D*c, ...) per output.

    Reads only this process's shards (its devices hold every frame after the ppermute rounds).
    """
    assert jax.process_index() == 0, "only process 0 receives frames"
    d0 = len(plan.receivers)
    result = []
    for out in outs:
        buf = np.empty((plan.devices,) + out.shape[2:], out.dtype)
        for shard in out.addressable_shards:
            pos = shard.index[0].start or 0
            data = np.asarray(shard.data)[0]
            TRANSFERS["bytes"] += data.nbytes
            buf[pos] = data[0]
            if pos in plan.receivers:
                j = plan.receivers.index(pos)
                for r in range(plan.rounds):
                    if r * d0 + j < len(plan.senders):
                        buf[plan.senders[r * d0 + j]] = data[1 + r]
        result.append(buf.reshape((-1,) + buf.shape[2:]))
    TRANSFERS["chunks"] += 1
    return tuple(result)
