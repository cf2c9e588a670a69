"""One process of a two-process run started by tests/test_launchers.py under an imitated launcher:
starts jax as the CLI does (the job comes from the launcher's environment), exports a small video
from all processes' devices, and prints as JSON what crossed to this process's host."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from vinf_jax.config import load_config
from vinf_jax.flow import start_jax
from vinf_jax.launchers import detect_job

ROOT = Path(__file__).resolve().parents[1]


def main(out: str) -> None:
    cfg = load_config(ROOT / "configs/tiny.json", ["devices=4"])
    job = detect_job(cfg.distributed)
    jax = start_jax(cfg)  # 2 virtual CPU devices per process, joins the job

    from vinf_jax.parallel.stream import TRANSFERS
    from vinf_jax.pipeline import VideoInfinityPipeline

    pipe = VideoInfinityPipeline.tiny_random(devices=4)
    latents = np.random.default_rng(0).standard_normal((1, 4, 32, 4, 4)).astype(np.float32)
    res = pipe.export_video(latents, Path(out) / "v.mp4", save_frames="npy", chunk=2)  # 4 chunks
    received = dict(TRANSFERS)
    today = pipe.decode(latents, chunk=2)  # today's path: every process gathers the whole video
    report = {"process": jax.process_index(), "processes": jax.process_count(), "launcher": job.launcher,
              "local_devices": jax.local_device_count(), "chunks": res.chunks, "received": received,
              "max_chunks_held": res.max_chunks_held, "path": str(res.path) if res.path else None}
    if res.path is not None:
        report["npy_equal"] = bool(np.array_equal(np.load(res.path.with_suffix(".npy")), today))
        report["frame_bytes"] = int(today.size)
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
