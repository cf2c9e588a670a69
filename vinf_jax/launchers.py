"""Which multi-process job this process is part of: the config, JAX_* variables, or the launcher.

Read before jax is imported (the CLI gives each process its share of virtual CPU devices), so no
jax import here. Precedence: ``distributed.*`` keys, then ``JAX_COORDINATOR_ADDRESS`` /
``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` (both already merged by the config), then the
environment a launcher sets for every process it starts:

* Open MPI's ``mpirun`` (``OMPI_COMM_WORLD_SIZE`` / ``_RANK``; the coordinator address comes from
  ``OMPI_MCA_orte_hnp_uri``, which Open MPI 4 sets; Open MPI 5 does not, so there set
  ``JAX_COORDINATOR_ADDRESS=<host of rank 0>:<free port>``);
* SLURM's ``srun`` (``SLURM_JOB_ID``, ``SLURM_STEP_NODELIST``, ``SLURM_PROCID``, ``SLURM_LOCALID``,
  and the step's task count ``SLURM_STEP_NUM_TASKS`` or ``SLURM_NTASKS``).

These are the variables ``jax.distributed.initialize()`` reads itself; the coordinator is then
``<first host>:<port derived from the job id>`` (``JAX_COORDINATOR_PORT`` moves the port), and
each process sees the accelerator numbered by its local rank (``JAX_LOCAL_DEVICE_IDS=0,1,..``
gives one process several). A launcher that starts one process stays single: no job to join.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

from vinf_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Job:
    """The processes of one run; ``launcher`` names where the facts came from."""

    num_processes: int = 1
    process_id: int = 0
    coordinator_address: str | None = None  # None: jax derives it from the launcher's environment
    launcher: str | None = None             # None (single), "config", "ompi" or "slurm"

    @property
    def multi_process(self) -> bool:
        return self.num_processes > 1 or self.coordinator_address is not None


def _int(environ: Mapping[str, str], var: str) -> int:
    try:
        return int(environ[var])
    except ValueError:
        raise ConfigError(f"distributed: environment variable {var}={environ[var]!r} is not an integer") from None


def launcher_job(environ: Mapping[str, str] | None = None, has_coordinator: bool = False) -> Job | None:
    """The job an mpirun / srun launch describes, or None outside one (or for a single task).
    ``has_coordinator``: the address is given, the launcher need not provide it."""
    env = os.environ if environ is None else environ
    if "OMPI_COMM_WORLD_SIZE" in env and "OMPI_COMM_WORLD_RANK" in env:
        # checked first: mpirun inside a SLURM allocation describes the processes actually started
        n, rank = _int(env, "OMPI_COMM_WORLD_SIZE"), _int(env, "OMPI_COMM_WORLD_RANK")
        if n <= 1:
            return None
        if "OMPI_MCA_orte_hnp_uri" not in env and not has_coordinator:
            raise ConfigError(f"distributed: an Open MPI job of {n} processes without OMPI_MCA_orte_hnp_uri "
                              "(Open MPI 5): set JAX_COORDINATOR_ADDRESS=<host of rank 0>:<free port> for every "
                              "process (e.g. mpirun -x JAX_COORDINATOR_ADDRESS=...)")
        return Job(n, rank, None, "ompi")
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID")
    if all(v in env for v in slurm) and ("SLURM_STEP_NUM_TASKS" in env or "SLURM_NTASKS" in env):
        # the step's tasks: a batch script's SLURM_NTASKS counts tasks that only srun starts
        n = _int(env, "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS")
        if n <= 1:
            return None
        return Job(n, _int(env, "SLURM_PROCID"), None, "slurm")
    return None


def detect_job(distributed, environ: Mapping[str, str] | None = None) -> Job:
    """The job from ``distributed`` (a ``DistributedConfig`` already filled from JAX_* variables)
    and the launcher's environment; explicit values win field by field."""
    found = launcher_job(environ, has_coordinator=bool(distributed.coordinator_address))
    if distributed.coordinator_address:
        n = distributed.num_processes or (found.num_processes if found else 1)
        pid = distributed.process_id if distributed.process_id is not None else (found.process_id if found else 0)
        if pid >= n:
            raise ConfigError(f"distributed.process_id={pid} is not below distributed.num_processes={n}")
        return Job(n, pid, distributed.coordinator_address, "config")
    if found is None:
        if (distributed.num_processes or 1) > 1:
            raise ConfigError(f"distributed.num_processes={distributed.num_processes} needs "
                              "distributed.coordinator_address (or JAX_COORDINATOR_ADDRESS, or a launcher: "
                              "srun, mpirun)")
        return Job()
    n = distributed.num_processes or found.num_processes
    pid = distributed.process_id if distributed.process_id is not None else found.process_id
    return Job(n, pid, None, found.launcher)
