"""The web app's second run: the pipeline stays loaded and compiled, so a second Generate with the
same shapes (other prompts and seed) should compile nothing and start denoising at once.

Runs the app's session (``vinf_jax.app.session``: what Generate calls, without the page) on the
README's demo config twice in one process, with a fresh persistent compilation cache, and reports
for each run: seconds from the call to the end of the first denoising step, the same less the
median step (the start: validation, prompt encoding, compile or nothing), the flow's
``first_step_s`` (compile or cache read + one step), compile-cache hits / misses, and the whole
run. ``python benchmarks/app_rerun.py [--config configs/demo.json] [--out benchmarks/results/app_rerun.json]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import env_info, write_json  # noqa: E402


class StepClock:
    """Observer noting when denoising began (the flow's event) and when each step finished."""

    def __init__(self):
        self.started, self.steps = None, []

    def __getattr__(self, name):
        return lambda *a: None

    def denoise_started(self, steps):
        self.started = time.perf_counter()

    def denoise_step(self, step):
        self.steps.append(time.perf_counter())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/demo.json")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="vinf-app-bench-"))
    os.environ["VINF_JAX_CACHE_DIR"] = str(work / "xla")  # the first run compiles for real

    from vinf_jax.app.session import FIELDS, AppSession, Limits
    from vinf_jax.config import load_config

    session = AppSession(load_config(args.config, [f"base_path={work / 'out'}"]), Limits(10_000, 10_000_000))
    t0 = time.perf_counter()
    session.preload()
    load_s = time.perf_counter() - t0
    runs = []
    prompts = FIELDS.index(next(f for f in FIELDS if f.key == "pipe_configs.prompts"))
    seed = FIELDS.index(next(f for f in FIELDS if f.key == "seed"))
    for k, (text, s) in enumerate([(None, None), ("a green circle moving up\na yellow square moving down", 11)]):
        values = session.defaults()
        if text is not None:
            values[prompts], values[seed] = text, s
        heard = StepClock()
        t1 = time.perf_counter()
        (res,) = session.run(session.config(values), heard)
        t2 = time.perf_counter()
        step_s = statistics.median(b - a for a, b in zip(heard.steps, heard.steps[1:]))
        runs.append({"run": k + 1, "call_to_first_step_s": round(heard.steps[0] - t1, 3),
                     # the first step less a typical step: what it took to start denoising
                     "start_s": round(heard.steps[0] - t1 - step_s, 3), "median_step_s": round(step_s, 3),
                     "first_step_s": res.summary["first_step_s"], "compile_s": res.summary["compile_s"],
                     "cache_hits": res.summary["compile_cache"]["hits"],
                     "cache_misses": res.summary["compile_cache"]["misses"], "load_s": res.summary["load_s"],
                     "denoise_s": res.summary["denoise_s"], "total_s": round(t2 - t1, 3)})
        print(runs[-1], flush=True)
    out = {"benchmark": "app_rerun", "config": args.config, "preload_s": round(load_s, 3), "runs": runs,
           "environment": env_info()}
    if args.out:
        write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
