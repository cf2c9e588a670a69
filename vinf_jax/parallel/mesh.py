"""The one mesh of vinf_jax: a 1-D axis ``"clips"`` over D devices, clips laid out in order."""

from __future__ import annotations

import os
import socket
import time
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vinf_jax.parallel.context import AXIS


def clip_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """Mesh over ``devices`` (a count takes the first ones; None: every device of every process).

    ``jax.devices()`` lists devices in process order, so neighbouring clips share a host wherever
    possible and only host boundaries put halos on the network.
    """
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, int):
        devices = jax.devices()[:devices]
    return Mesh(np.asarray(list(devices)), (AXIS,))


def clip_sharding(mesh: Mesh, ndim: int, clip_axis: int) -> NamedSharding:
    """Sharding of an ``ndim`` array whose axis ``clip_axis`` is split over the clips."""
    spec = [None] * ndim
    spec[clip_axis] = AXIS
    return NamedSharding(mesh, P(*spec))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Block until ``host:port`` accepts TCP connections, or raise ConfigError naming it.

    JAX aborts the whole process (no exception) when registration times out, so processes other
    than the coordinator check that it is reachable first and fail with a readable message.
    """
    from vinf_jax.errors import ConfigError

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"distributed.coordinator_address: expected HOST:PORT, got {address!r}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConfigError(f"distributed: cannot reach the coordinator at {address} within {timeout_s:g} s "
                                  f"({e.strerror or e}); start process 0 there, or fix "
                                  "distributed.coordinator_address / JAX_COORDINATOR_ADDRESS") from None
            time.sleep(0.5)


def initialize_distributed(coordinator: str | None, num_processes: int, process_id: int,
                           timeout_s: float | None = None, launcher: str | None = None) -> None:
    """Join a multi-host job. A process that cannot reach a given coordinator fails within
    ``timeout_s`` (env ``VINF_COORDINATOR_TIMEOUT``, default 120 s) naming the address. Without an
    address, jax derives it from the environment of ``launcher`` ("slurm", "ompi": see
    ``vinf_jax.launchers``)."""
    if timeout_s is None:
        timeout_s = float(os.environ.get("VINF_COORDINATOR_TIMEOUT", "120"))
    if coordinator is not None and process_id != 0:
        wait_for_coordinator(coordinator, timeout_s)
    jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=int(max(timeout_s, 10)),
                               cluster_detection_method=None if coordinator is not None else launcher)
