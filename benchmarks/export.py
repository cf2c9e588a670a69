#!/usr/bin/env python
"""The output stage alone: peak host memory and wall time of turning latents into an mp4.

    python benchmarks/export.py --out export.json                    # 256 and 1,024 frames, 256x256
    python benchmarks/export.py --frames 64 --size 64 --out e.json   # a quick smoke run

Tiny random model (``tiny-random``), 8 virtual CPU devices, random latents. Every configuration
runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own:

* ``old``: today's path before streaming: ``pipe.decode`` (all frames float32, gathered) + ``write_mp4``;
* ``new``: ``pipe.export_video`` (chunks decoded on the devices, uint8, streamed to the mp4);
* ``decode``: the new path's decode and transfer of every chunk to the host, nothing written;
* ``encode``: the new path's writer alone (``VideoSink``), fed chunks of already decoded frames.

``new`` and ``decode`` compile first (one chunk decoded) and time the run after; ``old`` is timed
once, its decoder's compile included (a few seconds for the tiny VAE: its program is specific to T).
On a CPU the devices' memory is host memory, so device buffers count too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402

MODES = ("old", "new", "decode", "encode")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--size", type=int, default=256, help="height = width of the video")
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--chunk", type=int, default=8, help="frames per device per chunk")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--out", default=None)
    p.add_argument("--one", nargs=2, metavar=("MODE", "FRAMES"), help=argparse.SUPPRESS)  # child process
    return p.parse_args(argv)


def rss_bytes() -> tuple[int, int]:
    """(current, peak) resident set of this process."""
    import resource

    cur = 0
    with open("/proc/self/statm") as f:
        cur = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return cur, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_one(mode: str, frames: int, a) -> dict:
    import numpy as np

    from vinf_jax.output import video_io
    from vinf_jax.output.export import frame_chunks
    from vinf_jax.pipeline import VideoInfinityPipeline
    from vinf_jax.output.video_sink import VideoSink

    pipe = VideoInfinityPipeline.tiny_random(devices=a.devices)
    s = pipe.vae_scale_factor
    latents = np.random.default_rng(0).standard_normal((1, 4, frames, a.size // s, a.size // s)).astype(np.float32)
    work = Path(tempfile.mkdtemp(prefix="vinf-export-bench-"))
    sample = None
    if mode == "encode":  # real decoded frames (x264's speed depends on the content), one chunk's worth
        _, it = frame_chunks(pipe, latents[:, :, : a.devices * a.chunk], a.chunk)
        sample = next(it)[0]
    base = rss_bytes()[0]

    def once(i):
        t0 = time.perf_counter()
        info = {}
        if mode == "old":
            video = pipe.decode(latents, chunk=a.chunk)
            video_io.write_mp4(work / f"old{i}.mp4", video, 8)
            del video
        elif mode == "new":
            r = pipe.export_video(latents, work / f"new{i}.mp4", 8, chunk=a.chunk)
            info = {"max_chunks_held": r.max_chunks_held, "wait_s": r.wait_s, "write_s": r.write_s,
                    "chunks": r.chunks}
        elif mode == "decode":
            _, it = frame_chunks(pipe, latents, a.chunk)
            for _ in it:
                pass
        else:
            with VideoSink(work, frames, a.size, a.size, 8) as sink:
                for k in range(frames // len(sample)):
                    sink.put(sample)
                sink.publish(video_io.OutputName.explicit(work / f"enc{i}.mp4"))
        return time.perf_counter() - t0, info

    t0 = time.perf_counter()
    if mode in ("new", "decode"):  # compile: the layout and chunk programs, one chunk decoded
        _, it = frame_chunks(pipe, latents, a.chunk)
        next(it)
        del it
    compile_s = time.perf_counter() - t0
    seconds, info = once(1)
    cur, peak = rss_bytes()
    return {"mode": mode, "frames": frames, "size": a.size, "devices": a.devices, "chunk": a.chunk,
            "warmup_s": round(compile_s, 3), "seconds": round(seconds, 3), "rss_before": base, "rss_end": cur,
            "peak_rss": peak, **info}


def main(argv=None):
    a = parse_args(argv)
    if a.one:
        mode, frames = a.one[0], int(a.one[1])
        print("RESULT " + json.dumps(run_one(mode, frames, a)), flush=True)
        return 0
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(a.devices), PYTHONPATH=str(common.REPO))
    runs = []
    for frames in a.frames:
        for mode in a.modes:
            cmd = [sys.executable, __file__, "--one", mode, str(frames), "--size", str(a.size),
                   "--devices", str(a.devices), "--chunk", str(a.chunk)]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if r.returncode or line is None:
                print(r.stderr[-3000:], file=sys.stderr)
                runs.append({"mode": mode, "frames": frames, "error": f"exit {r.returncode}"})
                continue
            runs.append(json.loads(line[7:]))
            x = runs[-1]
            print(f"{frames:>6} {mode:<7} {x['seconds']:>8.2f} s   peak RSS {common.fmt_bytes(x['peak_rss']):>10}"
                  f"   (before {common.fmt_bytes(x['rss_before'])})", flush=True)
    by = {(r["mode"], r["frames"]): r for r in runs if "error" not in r}
    checks = {}
    lo, hi = min(a.frames), max(a.frames)
    if ("new", lo) in by and ("new", hi) in by:
        checks["new_rss_growth"] = by[("new", hi)]["peak_rss"] / by[("new", lo)]["peak_rss"] - 1
    if ("old", lo) in by and ("old", hi) in by:
        checks["old_rss_growth"] = by[("old", hi)]["peak_rss"] / by[("old", lo)]["peak_rss"] - 1
    for f in a.frames:
        if all((m, f) in by for m in ("new", "decode", "encode")):
            checks[f"overlap_ratio_{f}"] = by[("new", f)]["seconds"] / max(by[("decode", f)]["seconds"],
                                                                           by[("encode", f)]["seconds"])
            checks[f"sum_ratio_{f}"] = by[("new", f)]["seconds"] / (by[("decode", f)]["seconds"]
                                                                    + by[("encode", f)]["seconds"])
    for k, v in checks.items():
        print(f"{k}: {v:.3f}")
    common.write_json(a.out, {"env": common.env_info(), "args": vars(a), "runs": runs, "checks": checks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
