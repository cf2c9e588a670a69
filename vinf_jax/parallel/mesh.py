"""The one mesh of vinf_jax: a 1-D axis ``"clips"`` over D devices, clips laid out in order."""

from __future__ import annotations

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


def initialize_distributed(coordinator: str, num_processes: int, process_id: int, timeout_s: int = 60) -> None:
    """Join a multi-host job; fails within ``timeout_s`` naming the coordinator if it is unreachable."""
    from vinf_jax.errors import ConfigError

    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=timeout_s)
    except Exception as e:  # jax raises XlaRuntimeError / RuntimeError with a long gRPC message
        raise ConfigError(f"distributed: cannot reach the coordinator at {coordinator} within {timeout_s} s "
                          f"(process {process_id} of {num_processes}): {str(e).splitlines()[0][:200]}") from None
