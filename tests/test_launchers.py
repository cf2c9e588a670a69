"""Multi-process start-up from the launcher's environment (srun, mpirun), and the two-process
output stage: only process 0 receives frames.

The launchers are imitated on one machine with the variables they set for each task (and that
``jax.distributed.initialize()`` reads): SLURM ``SLURM_JOB_ID`` (the coordinator port is derived
from it), ``SLURM_STEP_NODELIST`` (its first host is the coordinator), ``SLURM_NTASKS`` /
``SLURM_STEP_NUM_TASKS``, ``SLURM_PROCID``, ``SLURM_LOCALID``; Open MPI 4
``OMPI_MCA_orte_hnp_uri`` (``<jobid>.0;tcp://<launcher ip>:<port>``: the coordinator is the
launcher's ip, the port derived from the job id), ``OMPI_COMM_WORLD_SIZE`` / ``_RANK`` /
``_LOCAL_RANK``.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vinf_jax.config import DistributedConfig
from vinf_jax.errors import ConfigError
from vinf_jax.launchers import Job, detect_job

ROOT = Path(__file__).resolve().parents[1]
SLURM = {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "node[001-002]", "SLURM_NTASKS": "2",
         "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}
OMPI = {"OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.96.0.1:34911", "OMPI_COMM_WORLD_SIZE": "4",
        "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_LOCAL_RANK": "1"}
NONE = DistributedConfig()


def test_no_launcher_is_one_process():
    assert detect_job(NONE, {}) == Job()
    assert not Job().multi_process


def test_srun_and_mpirun_jobs_are_joined():
    assert detect_job(NONE, SLURM) == Job(2, 1, None, "slurm")
    assert detect_job(NONE, OMPI) == Job(4, 3, None, "ompi")
    # mpirun inside a SLURM allocation: the MPI processes are the job
    assert detect_job(NONE, {**SLURM, **OMPI}) == Job(4, 3, None, "ompi")


def test_a_single_task_stays_single():
    assert detect_job(NONE, {**SLURM, "SLURM_NTASKS": "1", "SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}) == Job()
    # a batch script asked for 8 tasks but runs the command once (no srun): the step has one task
    assert detect_job(NONE, {**SLURM, "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}) == Job()
    assert detect_job(NONE, {**OMPI, "OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"}) == Job()
    # an incomplete SLURM environment (salloc shell without a step) is no job
    assert detect_job(NONE, {k: v for k, v in SLURM.items() if k != "SLURM_STEP_NODELIST"}) == Job()


def test_explicit_keys_and_variables_win():
    given = DistributedConfig("10.0.0.5:1234", None, None)
    assert detect_job(given, SLURM) == Job(2, 1, "10.0.0.5:1234", "config")  # counts from srun
    assert detect_job(DistributedConfig("10.0.0.5:1234", 3, 2), SLURM) == Job(3, 2, "10.0.0.5:1234", "config")
    assert detect_job(given, {}) == Job(1, 0, "10.0.0.5:1234", "config")
    # the variables reach detect_job through the config (DistributedConfig.with_env_defaults)
    env = {"JAX_COORDINATOR_ADDRESS": "h:9", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}
    assert detect_job(NONE.with_env_defaults(env), {**env, **OMPI}) == Job(2, 0, "h:9", "config")
    assert detect_job(DistributedConfig(None, 4, 0), OMPI) == Job(4, 0, None, "ompi")


def test_unusable_environments_say_what_to_set():
    open_mpi_5 = {k: v for k, v in OMPI.items() if k != "OMPI_MCA_orte_hnp_uri"}
    with pytest.raises(ConfigError, match="JAX_COORDINATOR_ADDRESS"):
        detect_job(NONE, open_mpi_5)
    assert detect_job(DistributedConfig("h:1", None, None), open_mpi_5) == Job(4, 3, "h:1", "config")
    with pytest.raises(ConfigError, match="SLURM_PROCID"):
        detect_job(NONE, {**SLURM, "SLURM_PROCID": "x"})
    with pytest.raises(ConfigError, match="coordinator_address"):
        detect_job(DistributedConfig(None, 2, 0), {})


# ---------------------------------------------------------------------------------------------------
# two local processes under an imitated launcher

def derived_free_port() -> int:
    """A free port in the range jax derives coordinator ports from (61440..65535)."""
    for _ in range(200):
        port = random.randint(61440, 65535)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port in 61440..65535")


def launch(cmd, envs, cwd):
    base = {k: v for k, v in os.environ.items()
            if k != "XLA_FLAGS" and not k.startswith(("SLURM_", "OMPI_", "PMIX_", "JAX_COORDINATOR", "JAX_NUM_P",
                                                      "JAX_PROCESS"))}
    procs = [subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**base, "PYTHONPATH": str(ROOT), "VINF_COORDINATOR_TIMEOUT": "120", **e})
             for e in envs]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-3000:] for o in outs]
    return [o[0] for o in outs]


@pytest.mark.slow
def test_srun_job_streams_frames_to_process_0_only(tmp_path):
    """srun imitation, 2 tasks x 2 virtual devices: the job is joined from SLURM variables alone;
    process 1 copies no frame to its host; process 0 receives each frame once, one chunk at a time,
    holds at most a few chunks, and its npy equals today's gathered decode."""
    port = derived_free_port()
    job_id = port - 61440 + 4096 * 7  # jax: port = SLURM_JOB_ID % 4096 + 61440
    envs = [{"SLURM_JOB_ID": str(job_id), "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2",
             "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)} for i in range(2)]
    outs = launch([sys.executable, str(ROOT / "tests/export_worker.py"), str(tmp_path / "out")], envs, tmp_path)
    reports = sorted((json.loads(next(ln for ln in o.splitlines() if ln.startswith("REPORT "))[7:]) for o in outs),
                     key=lambda r: r["process"])
    p0, p1 = reports
    assert p0["launcher"] == p1["launcher"] == "slurm"
    assert p0["processes"] == p1["processes"] == 2 and p0["local_devices"] == 2
    assert p1["received"] == {"chunks": 0, "bytes": 0} and p1["path"] is None
    # uint8 frames (the mp4) and float32 (the npy) once each: 5 bytes per value, 4 chunks
    assert p0["received"] == {"chunks": 4, "bytes": 5 * p0["frame_bytes"]}
    assert p0["max_chunks_held"] <= 4 and p0["npy_equal"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["v.mp4", "v.npy"]


@pytest.mark.slow
def test_mpirun_job_writes_one_video(tmp_path):
    """Open MPI 4 imitation, 2 ranks: the CLI joins the job from OMPI variables alone; one mp4."""
    port = derived_free_port()
    uri = f"{(port - 61440) * 4096}.0;tcp://127.0.0.1:34911"  # jax: port = (jobid // 4096) % 4096 + 61440
    envs = [{"OMPI_MCA_orte_hnp_uri": uri, "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": str(i),
             "OMPI_COMM_WORLD_LOCAL_RANK": str(i)} for i in range(2)]
    sets = ["devices=4", "pipe_configs.steps=2", "pipe_configs.height=32", "pipe_configs.width=32",
            "pipe_configs.num_frames=4", "plugin_configs.attn.padding=2", "plugin_configs.conv_layer.padding=2",
            "plugin_configs.attn.top_k=4", f"base_path={tmp_path}/out"]
    cmd = [sys.executable, "-m", "vinf_jax.generate", "--config", str(ROOT / "configs/tiny.json"), "--quiet"]
    outs = launch(cmd + sum((["--set", s] for s in sets), []), envs, tmp_path)
    assert "wrote" in outs[0] and "wrote" not in outs[1]
    mp4s = list((tmp_path / "out").glob("*.mp4"))
    assert len(mp4s) == 1
    side = json.loads(mp4s[0].with_suffix(".json").read_text())
    assert side["resolved"]["processes"] == 2 and len(side["resolved"]["devices"]) == 4
    frames = side["resolved"]["num_clips"] * 4
    assert mp4s[0].name == f"0_{frames}_2_24.mp4"
    from vinf_jax.output.video_io import read_mp4

    assert read_mp4(mp4s[0]).shape == (frames, 32, 32, 3)
    assert np.isfinite(side["timings"]["decode_write_s"])
