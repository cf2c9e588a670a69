"""Does a model follow its prompts? Single clips of every prompt of the world, checked by the detector.

One call generates ``len(world.all_prompts())`` independent clips (Video-Infinity's context switched
off: each clip is the base model alone) with the demo config's sampler, from one seed, and reports
the share of frames whose colour and shape match the clip's prompt and of clips whose net motion has
the prompt's direction. Training calls it every N steps on fixed probe seeds (``train_log.json``);
the README's and BENCHMARKS.md's figures use it on held-out seeds.

Seeds are kept apart by use, so that what is reported is not what was tuned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vinf_jax.demo import world
from vinf_jax.demo.evaluate import INDEPENDENT, evaluate, load_demo_config

PROBE_SEEDS = (100,)  # watched while training
TUNING_SEEDS = (200, 201, 202)  # guidance, steps and training choices are made on these
HELD_OUT_SEEDS = (300, 301, 302, 303)  # reported in README / BENCHMARKS; never used to choose anything
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.json"


def single_clip_config(sets=()):
    """The demo config with Video-Infinity's context off (independent clips = the base model)."""
    return load_demo_config(CONFIG, list(INDEPENDENT) + list(sets))


def single_clips(pipe, cfg, seed: int, prompts=None) -> tuple[np.ndarray, list[str]]:
    """Frames of one clip per prompt (all of the world's by default), and the prompts."""
    prompts = list(prompts or world.all_prompts())
    p, n = cfg.pipe, len(prompts)
    frames = pipe(prompts, num_frames=p.num_frames, num_clips=n, steps=p.steps, guidance_scale=p.guidance_scale,
                  fps=p.fps, height=p.height, width=p.width, seed=seed, negative_prompt=p.negative_prompt,
                  scheduler=p.scheduler, vi_config=cfg.video_infinity.with_num_clips(n))
    return frames, prompts


def probe(pipe, cfg, seeds=PROBE_SEEDS) -> dict:
    """{"found", "color", "shape", "direction"}: means over the seeds of single clips of every prompt."""
    rows = []
    for seed in seeds:
        frames, prompts = single_clips(pipe, cfg, seed)
        rows.append(evaluate(frames, prompts, len(prompts)))
    return {k: float(np.mean([r[k] for r in rows])) for k in ("found", "color", "shape", "direction")}
