"""Check a generated video of the demo world against its prompts (tests and ``benchmarks/seams.py``).

Per frame the detector finds the object, its colour and its shape; per clip the net motion gives a
direction; per clip boundary the centroid jump is compared with the median step inside clips, and the general
seam metric (``vinf_jax.output.seams``) is computed from the pixels alone.
"""

from __future__ import annotations

import numpy as np

from vinf_jax.config.video_infinity import INDEPENDENT_CLIPS, clip_prompt_index
from vinf_jax.demo import world
from vinf_jax.output.seams import seam_scores

INDEPENDENT = INDEPENDENT_CLIPS  # the same seed with independent clips


def clip_prompts(prompts, num_clips: int) -> list[str]:
    """The prompt of each clip, as the pipeline assigns them (clip c: prompts[c * len // N])."""
    return [prompts[i] for i in clip_prompt_index(num_clips, len(prompts))]


def evaluate(frames: np.ndarray, prompts, num_clips: int) -> dict:
    t = frames.shape[0]
    f = t // num_clips
    dets = world.detect_video(frames)
    wanted = [world.parse_prompt(p) for p in clip_prompts(prompts, num_clips)]
    found = [d.found for d in dets]
    color_ok = [d.found and d.color == wanted[k // f]["color"] for k, d in enumerate(dets)]
    shape_ok = [d.found and d.shape == wanted[k // f]["shape"] for k, d in enumerate(dets)]
    dirs = [world.clip_direction(dets[c * f:(c + 1) * f]) for c in range(num_clips)]
    dir_ok = [d == w["direction"] for d, w in zip(dirs, wanted)]
    cs = world.centroid_seams(dets, f)
    return {"found": float(np.mean(found)), "color": float(np.mean(color_ok)),
            "shape": float(np.mean(shape_ok)), "direction": float(np.mean(dir_ok)),
            "directions": dirs, "centroid_ratio": cs["ratio"], "centroid_seams": cs["seams"],
            "centroid_step": cs["within_median"], "seam_metric": seam_scores(frames, f)}


def load_demo_config(path, sets=()):
    from vinf_jax.config import load_config

    return load_config(str(path), list(sets))


def generate(pipe, cfg, seed: int | None = None) -> np.ndarray:
    """Frames of the config ``cfg`` (a GenerateConfig) on ``pipe``, optionally with another seed."""
    p = cfg.pipe
    n = cfg.video_infinity.num_clips or pipe.num_devices
    return pipe(list(p.prompts), num_frames=p.num_frames, num_clips=n, steps=p.steps,
                guidance_scale=p.guidance_scale, fps=p.fps, height=p.height, width=p.width,
                seed=cfg.seed if seed is None else seed, negative_prompt=p.negative_prompt, scheduler=p.scheduler,
                vi_config=cfg.video_infinity.with_num_clips(n))
