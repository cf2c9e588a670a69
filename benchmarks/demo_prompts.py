"""Does the tiny-demo model follow its prompts, and where does the prompt act? (issue 23)

    python benchmarks/demo_prompts.py --weights DIR --seeds 200 201 202 --guidance 3 4 6   # tuning seeds
    python benchmarks/demo_prompts.py --weights DIR --seeds 300 301 302 303               # held-out seeds
    python benchmarks/demo_prompts.py --weights DIR --gap --noise                         # diagnostics

``--weights``: a diffusers folder written by ``python -m vinf_jax.demo.train`` (default: the shipped
``vinf_jax/demo/weights``); it is converted with the user's converter into a temporary folder.

- default: single clips of every prompt of the world (``vinf_jax.demo.probe``, Video-Infinity's
  context off), per seed and guidance scale: share of frames with the prompt's colour / shape, of
  clips with its direction, and per colour / direction;
- ``--noise``: the same noise with each of the four colour words: does the colour follow the
  prompt or the noise (clips whose colour is the same for all four prompts)?
- ``--gap``: the training loss (epsilon or v, as the scheduler config says) per timestep band on fresh world clips (encoded by the
  folder's own VAE encoder) with the right prompt, the empty prompt, and a prompt with one word
  (colour / shape / direction) wrong: the excess loss of a wrong word is how much the model uses it;
  also the schedule's terminal SNR.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import env_info, repo_relative, write_json  # noqa: E402
from vinf_jax.demo import world  # noqa: E402

BANDS = ((0, 250), (250, 500), (500, 750), (750, 1000))


def per_value(frames, prompts, f) -> dict:
    """Accuracy per colour word and per direction word (frames for colour, clips for direction)."""
    out = {}
    for c, p in enumerate(prompts):
        w = world.parse_prompt(p)
        dets = world.detect_video(frames[c * f:(c + 1) * f])
        out.setdefault(w["color"], []).append(np.mean([d.found and d.color == w["color"] for d in dets]))
        out.setdefault(w["direction"], []).append(world.clip_direction(dets) == w["direction"])
    return {k: float(np.mean(v)) for k, v in out.items()}


def in_lane(frames, prompts, f) -> float | None:
    """Share of clips whose object (median centroid across its motion) is in its prompt's half of the frame
    (``world.lane``): does the model put the object where the direction word says it travels? None in a
    world without lanes (the shipped one)."""
    if world.LANE_WIDTH is None:
        return None
    ok = []
    for c, p in enumerate(prompts):
        axis, lo, hi = world.lane(world.parse_prompt(p)["direction"])
        across = [d.centroid[axis] for d in world.detect_video(frames[c * f:(c + 1) * f]) if d.found]
        ok.append(bool(across) and (np.median(across) >= world.SIZE / 2) == (lo >= world.SIZE / 2))
    return float(np.mean(ok))


def accuracy(pipe, seeds, guidances) -> list[dict]:
    from vinf_jax.demo.evaluate import evaluate
    from vinf_jax.demo.probe import single_clip_config, single_clips

    rows = []
    for g in guidances:
        cfg = single_clip_config([f"pipe_configs.guidance_scale={g}"])
        for seed in seeds:
            t0 = time.perf_counter()
            frames, prompts = single_clips(pipe, cfg, seed)
            r = evaluate(frames, prompts, len(prompts))
            row = {"guidance": g, "seed": seed, **{k: r[k] for k in ("found", "color", "shape", "direction")},
                   "lane": in_lane(frames, prompts, cfg.pipe.num_frames),
                   "per_value": per_value(frames, prompts, cfg.pipe.num_frames), "s": round(time.perf_counter() - t0, 1)}
            print(row, flush=True)
            rows.append(row)
    return rows


def same_noise(pipe, seed: int) -> dict:
    """Each clip's noise with the four colour words in turn (clip c gets colour (c + k) % 4 in call k)."""
    from vinf_jax.demo.probe import single_clip_config, single_clips

    cfg, cols, n = single_clip_config(), list(world.COLORS), 16
    got = np.empty((4, n), object)
    for k in range(4):
        prompts = [f"a {cols[(c + k) % 4]} {world.SHAPES[c % 2]} moving {list(world.DIRECTIONS)[(c // 2) % 4]}"
                   for c in range(n)]
        frames, _ = single_clips(pipe, cfg, seed, prompts)
        for c in range(n):
            found = [d.color for d in world.detect_video(frames[c * 8:(c + 1) * 8]) if d.found]
            got[k, c] = max(set(found), key=found.count) if found else None
    want = np.array([[cols[(c + k) % 4] for c in range(n)] for k in range(4)])
    return {"seed": seed, "colour_is_prompt": float((got == want).mean()),
            "colour_same_for_all_prompts": float(np.mean([len(set(got[:, c])) == 1 for c in range(n)]))}


def encode_clips(ae, clips) -> np.ndarray:
    """Latents (scaled posterior means, (N, T, h, w, c)) of frame arrays (T, H, W, 3) in [0, 1] through a
    diffusers ``AutoencoderKL`` (a trained folder's own VAE, encoder included)."""
    import torch

    with torch.no_grad():
        return np.stack([ae.encode(torch.from_numpy(c.transpose(0, 3, 1, 2) * 2 - 1)).latent_dist.mean.numpy()
                         .transpose(0, 2, 3, 1) for c in clips]) * ae.config.scaling_factor


def loss_gap(weights: Path, ck, clips: int = 96, seed: int = 0) -> dict:
    """MSE of the model's prediction (epsilon or v) per timestep band with the right / empty /
    one-word-wrong prompt (same x0, t, noise)."""
    import jax
    import jax.numpy as jnp
    from diffusers import AutoencoderKL

    from vinf_jax.demo.train import alphas_cumprod
    from vinf_jax.models.clip_text import tokenize

    rng = np.random.default_rng(seed)
    scenes = [world.random_scene(rng) for _ in range(clips)]
    ae = AutoencoderKL.from_pretrained(str(weights / "vae")).eval()
    x0 = encode_clips(ae, [world.render(s, 8, 16) for s in scenes])
    acp = alphas_cumprod(ck.scheduler_config)
    v_pred = ck.scheduler_config.get("prediction_type") == "v_prediction"  # else epsilon

    def other(options, word):
        rest = [o for o in options if o != word]
        return rest[rng.integers(len(rest))]

    variants = {"right": [world.caption(s) for s in scenes], "empty": [""] * clips}
    # one word wrong, for each word the world lets vary (benchmarks/demo_direction.py has a one-colour world)
    for word, field, options in (("colour", "color", list(world.COLORS)), ("shape", "shape", list(world.SHAPES)),
                                 ("direction", "direction", list(world.DIRECTIONS))):
        if len(options) > 1:
            variants[f"wrong {word}"] = [world.caption(dataclasses.replace(s, **{field: other(options, getattr(s, field))}))
                                         for s in scenes]
    text = jax.jit(ck.text_encoder.apply)
    unet = jax.jit(ck.unet.apply)
    out = {}
    for lo, hi in BANDS:
        t = rng.integers(lo, hi, size=clips)
        noise = rng.standard_normal(x0.shape).astype(np.float32)
        ab = acp[t][:, None, None, None, None]
        xt = (np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise).astype(np.float32)
        band = {}
        for name, prompts in variants.items():
            ctx = text(ck.text_encoder.params, jnp.asarray(tokenize(ck.tokenizer, prompts)))
            errs = []
            for i in range(0, clips, 16):
                eps = unet(ck.unet.params, jnp.asarray(xt[i:i + 16]), jnp.asarray(t[i:i + 16], jnp.float32),
                           ctx[i:i + 16], jnp.full((len(t[i:i + 16]),), 16.0))
                want = noise[i:i + 16] if not v_pred else (np.sqrt(ab) * noise - np.sqrt(1 - ab) * x0)[i:i + 16]
                errs.append(np.mean(np.square(np.asarray(eps) - want), axis=(1, 2, 3, 4)))
            band[name] = float(np.mean(np.concatenate(errs)))
        out[f"{lo}-{hi}"] = band
        print(f"t {lo}-{hi}: " + ", ".join(f"{k} {v:.4f}" for k, v in band.items()), flush=True)
    a = float(acp[-1])
    return {"bands": out, "terminal": {"alphas_cumprod": a, "snr": a / (1 - a), "signal_scale": a ** 0.5}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, help="diffusers folder (default: the shipped weights)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[], help="single-clip accuracy on these seeds")
    ap.add_argument("--guidance", type=float, nargs="+", default=[4.0])
    ap.add_argument("--noise", action="store_true", help="same noise, different colour words")
    ap.add_argument("--gap", action="store_true", help="loss per timestep band, right vs wrong prompts")
    ap.add_argument("--speed", type=float, help=f"world speed in px/s for --gap (default {world.SPEED}; the model "
                    "shipped before issue 23 was trained at 16)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if args.speed:
        world.SPEED = args.speed
    from vinf_jax.convert.videocrafter2 import convert
    from vinf_jax.demo.model import WEIGHTS
    from vinf_jax.loading import load_checkpoint
    from vinf_jax.pipeline import VideoInfinityPipeline

    weights = args.weights or WEIGHTS
    out = {"env": env_info(), "weights": repo_relative(weights)}
    with tempfile.TemporaryDirectory() as tmp:
        ck = load_checkpoint(convert(None, Path(tmp) / "ck", base=weights))
        pipe = VideoInfinityPipeline(ck.unet, ck.text_encoder, ck.vae, ck.tokenizer, ck.scheduler_config)
        if args.seeds:
            out["single_clips"] = accuracy(pipe, args.seeds, args.guidance)
            for g in args.guidance:
                rows = [r for r in out["single_clips"] if r["guidance"] == g]
                keys = ("found", "color", "shape", "direction") + (("lane",) if world.LANE_WIDTH is not None else ())
                print(f"guidance {g}: " + ", ".join(f"{k} {np.mean([r[k] for r in rows]):.3f}" for k in keys))
        if args.noise:
            out["same_noise"] = same_noise(pipe, 11)
            print(out["same_noise"])
        if args.gap:
            out["loss_gap"] = loss_gap(Path(weights), ck)
            print(out["loss_gap"]["terminal"])
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
