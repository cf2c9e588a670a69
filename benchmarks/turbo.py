#!/usr/bin/env python
"""T2V-Turbo's few-step sampler against the 30-step guided sampler: UNet evaluations and whole-generation
time per video, on the same T2V-Turbo-layout model, frames and devices, in the same process.

The time of one turbo step is the slope of whole-generation time against steps (4, 8, 16), not the
progress callback's spacing (the pipeline polls for a finished step every 50 ms).

    python benchmarks/turbo.py --small --out turbo_cpu.json        # tiny random turbo model, CPU (a ratio)
    python benchmarks/turbo.py --out turbo.json --comm-json comm.json   # full size, random weights, one GPU

Each sampler runs the whole generation (prompt, the one compiled loop, VAE decode) once to compile; then
``--repeats`` rounds time every sampler in turn (interleaved); the table reports the median and the minimum. A UNet evaluation is one pass of the UNet
over the video's latents: the guided sampler makes two per step (the CFG batch of 2), turbo one.
Full size also reports frames/s per GPU and projects the seed's 2,300 frames on 8 H200s from the measured
turbo step (per frame, batch 1) and the communication model of ``comm.py`` (its bytes per step per device;
halved if measured at batch 2: every halo and global row is per batch element, method §7).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402

PROMPT = "A beagle wearing diving goggles swimming in the ocean while the camera is moving, coral reefs in the background."
GUIDED = ("sde-dpmsolver++", 30, 12.0)  # Video-Infinity's released sampler and settings
TURBO_STEPS = (4, 8, 16)
SCHEDULER = {"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_schedule": "scaled_linear",
             "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "epsilon", "clip_sample": False,
             "set_alpha_to_one": False, "steps_offset": 1,
             "t2v_turbo": {"kind": "v2-mg", "lcm_origin_steps": 200, "motion_gs": 0.05, "motion_percentage": 0.5}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="tiny random turbo model at 64x64 (CPU)")
    p.add_argument("--clips", type=int, default=None, help="clips (default 2 small, 1 full)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default 8 small, 16 full)")
    p.add_argument("--steps", type=int, nargs="+", default=list(TURBO_STEPS), help="turbo step counts")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-guided", action="store_true", help="skip the 30-step guided baseline (GPU time)")
    p.add_argument("--comm-json", default=None, help="comm.py's JSON, for the 8-GPU projection")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    a.clips = a.clips or (2 if a.small else 1)
    a.frames = a.frames or (8 if a.small else 16)
    return a


def turbo_pipeline(small: bool):
    """A T2V-Turbo-v2 (motion guidance) layout pipeline with random weights, tiny or full size."""
    from vinf_jax import tiny
    from vinf_jax.loading import Model
    from vinf_jax.models.unet3d import UNetConfig
    from vinf_jax.pipeline import VideoInfinityPipeline
    from vinf_jax.random_init import random_params

    if small:
        unet_cfg, text_cfg, vae_cfg = tiny.UNET, tiny.TEXT, tiny.VAE
    else:
        from benchmarks.generate_full import FULL_TEXT
        from vinf_jax.models.clip_text import CLIPTextConfig
        from vinf_jax.models.vae import VAEConfig

        unet_cfg = UNetConfig.from_dict(common.unet_dict(False))
        text_cfg, vae_cfg = CLIPTextConfig.from_dict(FULL_TEXT), VAEConfig.from_dict(common.vae_dict(False))
    unet_cfg = dataclasses.replace(unet_cfg, time_cond_proj_dim=256, motion_cond_proj_dim=256)
    models = []
    for seed, (kind, cfg) in enumerate((("unet", unet_cfg), ("text_encoder", text_cfg), ("vae", vae_cfg))):
        model = Model(kind, cfg)
        model.params = random_params(model.abstract, seed, **({} if small else {"scale_std": 0.1}))
        models.append(model)
    return VideoInfinityPipeline(*models, tiny.WordTokenizer(), SCHEDULER)


def run_cases(pipe, args, cases, height, width, on_case=lambda: None) -> list[dict]:
    """Each case once to compile, then ``repeats`` rounds that time every case in turn (interleaved, so a
    busy shared machine slows all cases alike)."""
    import numpy as np

    from vinf_jax.errors import NonFiniteError

    def once(scheduler, steps, guidance):
        t = time.perf_counter()
        try:
            pipe(PROMPT, num_frames=args.frames, num_clips=args.clips, steps=steps, guidance_scale=guidance,
                 height=height, width=width, seed=123, scheduler=scheduler)
            bad = None
        except NonFiniteError as e:  # random full-size weights in bf16 may overflow; the time is the loop's
            bad = str(e)
        return time.perf_counter() - t, bad

    out = []
    for scheduler, steps, guidance in cases:
        first, bad = once(scheduler, steps, guidance)
        used = pipe.scheduler_used
        turbo = used["kind"] == "t2v-turbo"
        out.append({"scheduler": used["kind"], "steps": steps, "timesteps": used["timesteps"],
                    "unet_batch": 1 if turbo else 2, "unet_evaluations": steps * (1 if turbo else 2),
                    "first_call_s": first, "wall_s": [], "non_finite": bad})
        on_case()
    for _ in range(args.repeats):
        for case, (scheduler, steps, guidance) in zip(out, cases):
            wall, case["non_finite"] = once(scheduler, steps, guidance)
            case["wall_s"].append(wall)
        on_case()
    for case in out:
        case["wall_s_median"] = float(np.median(case["wall_s"]))
        case["wall_s_min"] = float(np.min(case["wall_s"]))
    return out


def fit_steps(cases: list[dict]) -> dict | None:
    """Least squares of whole-generation time against turbo steps: the slope is one step (batch 1), the
    intercept what every generation pays once (prompt, noise, decode, dispatch)."""
    import numpy as np

    pts = [(c["steps"], c["wall_s_median"]) for c in cases if c["scheduler"] == "t2v-turbo"]
    if len(pts) < 2:
        return None
    slope, intercept = np.polyfit(*zip(*pts), 1)
    return {"step_s": float(slope), "fixed_s": float(intercept)}


def project(res: dict, comm_json: str | None) -> dict | None:
    """2,300 frames (144 clips of 16) on 8 H200s, 18 clips per GPU, from the measured turbo step per frame."""
    import json

    fit = res.get("turbo_fit")
    if not fit:
        return None
    per_frame_s = fit["step_s"] / (res["setup"]["clips"] * res["setup"]["frames_per_clip"])
    comm_ms, nvlink = None, 900e9  # bytes/s, the NVLink row of comm.py's projection
    if comm_json and os.path.exists(comm_json):
        comm = json.load(open(comm_json))
        scale = 1.0 if comm.get("setup", {}).get("batch") == 1 else 0.5  # per batch element (method §7)
        if comm.get("bytes_per_step"):
            comm_ms = scale * comm["bytes_per_step"] / nvlink * 1e3
    frames_per_gpu = 18 * 16
    out = {"video_frames": 144 * 16, "gpus": 8, "frames_per_gpu": frames_per_gpu, "comm_ms_per_step": comm_ms,
           "assumes": "step time linear in frames per GPU (as measured up to the memory limit); comm: comm.json's "
                      "bytes per step per device (halved if it was measured at batch 2) over NVLink at 900 GB/s, "
                      "not overlapped; decode excluded"}
    step_s = per_frame_s * frames_per_gpu + (comm_ms or 0.0) / 1e3
    out["step_s"] = step_s
    for steps in TURBO_STEPS:
        out[f"{steps}_steps_denoise_s"] = steps * step_s
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax
    import numpy as np

    h, w = (64, 64) if args.small else (320, 512)
    res = {"benchmark": "turbo", "command": " ".join(["python", os.path.relpath(sys.argv[0])] + sys.argv[1:]),
           "env": common.env_info(),
           "setup": {"small": args.small, "clips": args.clips, "frames_per_clip": args.frames, "video": [h, w],
                     "devices": 1, "repeats": args.repeats, "guided": list(GUIDED)}, "cases": []}
    t0 = time.perf_counter()
    pipe = turbo_pipeline(args.small)
    res["build_s"] = time.perf_counter() - t0
    res["dtype"] = str(np.dtype(pipe.dtype))
    print(f"turbo pipeline built in {res['build_s']:.1f} s ({res['dtype']}, {jax.devices()[0].platform})", flush=True)
    cases = [] if args.no_guided else [GUIDED]
    cases += [("t2v-turbo", s, 7.5) for s in args.steps]
    res["cases"] = run_cases(pipe, args, cases, h, w, on_case=lambda: common.write_json(args.out, res))
    frames = args.clips * args.frames
    for case in res["cases"]:
        print(f"{case['scheduler']:16s} {case['steps']:3d} steps: {case['unet_evaluations']:3d} UNet evaluations, "
              f"whole generation {case['wall_s_median']:.3f} s ({frames / case['wall_s_median']:.2f} frames/s)",
              flush=True)
    base = next((c for c in res["cases"] if c["scheduler"] != "t2v-turbo"), None)
    if base:
        for c in res["cases"]:
            c["evaluations_ratio"] = base["unet_evaluations"] / c["unet_evaluations"]
            c["speedup"] = base["wall_s_median"] / c["wall_s_median"]
            c["speedup_min"] = base["wall_s_min"] / c["wall_s_min"]  # the least disturbed runs (shared CPUs)
    res["turbo_fit"] = fit_steps(res["cases"])
    if not args.small:
        res["device_memory"] = common.device_memory(jax.devices()[0])
        res["projection_2300_frames_8_gpus"] = project(res, args.comm_json)
    common.write_json(args.out, res)
    print("| sampler | steps | UNet evaluations | x fewer | whole generation s, median (min) | x faster, median (min) |")
    for c in res["cases"]:
        print(f"| {c['scheduler']} | {c['steps']} | {c['unet_evaluations']} | {c.get('evaluations_ratio', 1):.1f} | "
              f"{c['wall_s_median']:.3f} ({c['wall_s_min']:.3f}) | {c.get('speedup', 1):.2f} ({c.get('speedup_min', 1):.2f}) |")
    if res.get("projection_2300_frames_8_gpus"):
        print("projection:", res["projection_2300_frames_8_gpus"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
