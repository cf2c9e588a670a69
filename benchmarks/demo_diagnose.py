"""Where the tiny-demo model loses its direction word (issue 23): measurements of a trained folder, and one training experiment.

    python benchmarks/demo_diagnose.py text --weights DIR          # what the text encoder passes on
    python benchmarks/demo_diagnose.py readable --weights DIR      # what the noisy clip already says
    python benchmarks/demo_diagnose.py readable --weights DIR --variant zero-snr --t 850 900 950
    python benchmarks/demo_diagnose.py band --variant direction-only --t-range 850 950 --steps 600
    python benchmarks/demo_diagnose.py trail --weights DIR --variant strong-trail+static
    python benchmarks/demo_diagnose.py memorise --groups 4 --steps 1000
    python benchmarks/demo_diagnose.py memorise --groups 4 --steps 1000 --group-weight 10
    python benchmarks/demo_diagnose.py memorise --groups 4 --steps 1600 --group-weight 10 --broaden-at 800 --broaden-to 64

``--weights``: a diffusers folder written by ``python -m vinf_jax.demo.train`` (default: the shipped
weights); ``--variant``: ``benchmarks/demo_direction.py`` variants the folder was trained with.

- ``text``: the text encoder's output for captions that differ in one word, as the mean absolute
  difference per token position (0: start, 2: colour, 3: shape, 5: direction, 6: end, 7: padding).
  The UNet reads only these states: a word whose states do not differ cannot steer it.
- ``readable``: true clips of the world noised to timestep t, the model's x0 prediction decoded
  (the folder's own VAE) and run through the detector: the share of clips whose predicted motion has the
  clip's direction, with the right prompt, with the direction word flipped, and with the empty prompt.
  Where the right and flipped rows agree, the model reads the direction from the clip, not the prompt.
- ``band``: trains a fresh UNet and text encoder (the full preset's sizes and rate, zero terminal SNR)
  only on timesteps in ``--t-range``, on latents of 512 world videos (the shipped VAE), and every 200
  steps prints the held-out loss with the right prompt, with the direction word flipped and with a wrong
  colour: can the direction word be learnt where it is worth most? No trained folder is needed.
- ``trail``: single clips of every prompt (tuning seeds 200-202, the demo's sampler): the share whose trail
  lies behind the object as the prompt's direction says (the side of the object where the pixels dimmer than
  the object but brighter than half the trail's faintest level lie, in the majority of frames). The static
  world's only visible effect of the direction word.
- ``memorise``: trains a fresh UNet and text encoder (the full preset's sizes and rate, VideoCrafter2's
  schedule) on nothing but ``--groups`` groups of four clips, each group one object on one spot at its middle
  frame moving the four ways (``train.random_videos``), a batch being two groups sharing noise and timestep
  (``direction_groups=4``); every 200 steps, the loss on the first four of those groups with the right prompt,
  and the excess with the direction word flipped and with a wrong colour, per band; the same on four held-out
  groups (rows "held-out ..."). Within a group only the word tells the clips apart, so this asks whether
  the model can learn to use it at all, with nothing to generalise, and how that grows with ``--groups``.
  ``--group-weight W`` trains as the trainer's ``group_weight`` does: the error's part that differs inside a
  group weighs 1 + W (``train.within_group_mse``); the evaluations stay the plain loss. ``--broaden-at S
  --broaden-to G``: from step S on, the batches come from G other groups instead (the evaluated groups
  are no longer trained on): does a word learnt by heart on a few clips become a rule on many?
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import write_json  # noqa: E402
from benchmarks.demo_prompts import encode_clips  # noqa: E402
from vinf_jax.demo import world  # noqa: E402

PAIRS = (("direction", "a red circle moving left"), ("colour", "a blue circle moving right"),
         ("shape", "a red square moving right"))
BASE = "a red circle moving right"
OPPOSITE = {"right": "left", "left": "right", "up": "down", "down": "up"}


def text_differences(ck) -> dict:
    """{word: [mean |state(BASE) - state(BASE with that word changed)| per token position]}."""
    import jax.numpy as jnp

    from vinf_jax.models.clip_text import tokenize

    captions = [BASE] + [c for _, c in PAIRS]
    h = np.asarray(ck.text_encoder.apply(ck.text_encoder.params, jnp.asarray(tokenize(ck.tokenizer, captions))))
    return {word: [round(float(d), 4) for d in np.abs(h[0] - h[k + 1]).mean(-1)] for k, (word, _) in enumerate(PAIRS)}


def readable(weights: Path, ck, timesteps, clips: int = 24, seed: int = 7) -> dict:
    """{t: {prompt: {"direction", "flipped", "found"}}} of the decoded x0 predictions (see the module doc)."""
    import jax
    import jax.numpy as jnp
    import torch
    from diffusers import AutoencoderKL

    from vinf_jax.demo.train import alphas_cumprod
    from vinf_jax.models.clip_text import tokenize

    rng = np.random.default_rng(seed)
    scenes = [world.random_scene(rng) for _ in range(clips)]
    ae = AutoencoderKL.from_pretrained(str(weights / "vae")).eval()
    sf = ae.config.scaling_factor

    def decode(z):  # (clips, 8, h, w, c) scaled latents -> (clips, 8, 64, 64, 3) in [0, 1]
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray((z / sf).astype(np.float32).reshape(-1, *z.shape[2:]).transpose(0, 3, 1, 2)))
            out = ae.decode(x).sample.numpy().transpose(0, 2, 3, 1)
        return np.clip((out + 1) / 2, 0, 1).reshape(z.shape[0], -1, *out.shape[1:])

    x0 = encode_clips(ae, [world.render(s, 8, 16) for s in scenes])
    acp = alphas_cumprod(ck.scheduler_config)
    if ck.scheduler_config.get("prediction_type") != "v_prediction":
        raise SystemExit("readable: the demo models predict v; this folder's scheduler says otherwise")
    text, unet = jax.jit(ck.text_encoder.apply), jax.jit(ck.unet.apply)
    prompts = {"right": [world.caption(s) for s in scenes],
               "flipped": [world.caption(dataclasses.replace(s, direction=OPPOSITE[s.direction])) for s in scenes],
               "empty": [""] * clips}
    out = {}
    for t in timesteps:
        noise = rng.standard_normal(x0.shape).astype(np.float32)
        ab = float(acp[t])
        xt = (np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise).astype(np.float32)
        row = {}
        for name, caps in prompts.items():
            ctx = text(ck.text_encoder.params, jnp.asarray(tokenize(ck.tokenizer, caps)))
            v = np.asarray(unet(ck.unet.params, jnp.asarray(xt), jnp.full((clips,), float(t)), ctx, jnp.full((clips,), 16.0)))
            frames = decode(np.sqrt(ab) * xt - np.sqrt(1 - ab) * v)  # the x0 prediction
            dets = [world.detect_video(f) for f in frames]
            dirs = [world.clip_direction(d) for d in dets]
            row[name] = {"direction": float(np.mean([d == s.direction for d, s in zip(dirs, scenes)])),
                         "flipped": float(np.mean([d == OPPOSITE[s.direction] for d, s in zip(dirs, scenes)])),
                         "found": float(np.mean([[x.found for x in d] for d in dets]))}
        out[int(t)] = row
        print(f"t={t}: " + "  ".join(f"{k}: direction {r['direction']:.2f} flipped {r['flipped']:.2f} found {r['found']:.2f}"
                                     for k, r in row.items()), flush=True)
    return out


def trail_direction(frame: np.ndarray) -> str | None:
    """The way the object in one frame (H, W, 3) in [0, 1] faces, judged from its trail: away from the mean
    position of the trail's pixels (None: no object, or no trail pixels)."""
    det = world.detect(frame)
    bright = np.asarray(frame, np.float32).max(-1)
    dim = (bright > 0.5 * min(level for _, level in world.TRAIL)) & (bright < world.THRESHOLD)
    if not det.found or dim.sum() < 5:
        return None
    ys, xs = np.nonzero(dim)
    dx, dy = -world.wrapped_step(np.asarray(det.centroid)[None], np.stack([xs + 0.5, ys + 0.5], -1)).mean(0)
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def trail_sides(ck, seeds=(200, 201, 202)) -> dict:
    """{"agrees": share of clips whose majority trail direction is the prompt's, "clips"} (see the module doc)."""
    from vinf_jax.demo.probe import single_clip_config, single_clips
    from vinf_jax.pipeline import VideoInfinityPipeline

    pipe = VideoInfinityPipeline(ck.unet, ck.text_encoder, ck.vae, ck.tokenizer, ck.scheduler_config)
    agree = []
    for seed in seeds:
        frames, prompts = single_clips(pipe, single_clip_config(), seed)
        f = len(frames) // len(prompts)
        for c, prompt in enumerate(prompts):
            clip = np.asarray(frames[c * f:(c + 1) * f], np.float32)
            votes = [d for d in (trail_direction(x / 255.0 if clip.max() > 1.5 else x) for x in clip) if d]
            agree.append(bool(votes) and max(set(votes), key=votes.count) == world.parse_prompt(prompt)["direction"])
    out = {"agrees": float(np.mean(agree)), "clips": len(agree), "seeds": list(seeds)}
    print(f"trail behind the object as the prompt says: {out['agrees']:.3f} of {out['clips']} clips", flush=True)
    return out


def _shipped_vae():
    """The shipped autoencoder (diffusers), encoder included: the latents the experiments train on."""
    from diffusers import AutoencoderKL

    from vinf_jax.demo.model import WEIGHTS

    return AutoencoderKL.from_pretrained(str(WEIGHTS / "vae")).eval()


def _demo_tokenizer():
    from transformers import CLIPTokenizer

    from vinf_jax.demo.tokenizer import write_tokenizer

    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(d)
        return CLIPTokenizer.from_pretrained(d)


def _fresh_objective(steps: int, seed: int, **kw):
    """``train.unet_objective`` of a fresh UNet and text encoder at the full preset's sizes and rate."""
    from vinf_jax.demo import train
    from vinf_jax.models.clip_text import CLIPTextConfig
    from vinf_jax.models.unet3d import UNetConfig

    p = train.PRESETS["full"]
    return train.unet_objective(UNetConfig.from_dict(train.unet_layout(p), fps_cond=True),
                                CLIPTextConfig.from_dict(train.TEXT), p["lr"], steps, seed, **kw)


def _prompt_sets(tok, scenes) -> dict:
    """Token ids of the scenes' captions ("right"), with the direction word flipped, and (where the world has
    more than one colour) with the next colour."""
    import jax.numpy as jnp

    from vinf_jax.models.clip_text import tokenize

    ids = lambda sc: jnp.asarray(tokenize(tok, [world.caption(s) for s in sc]))
    colours = list(world.COLORS)
    out = {"right": ids(scenes), "flipped": ids([dataclasses.replace(s, direction=OPPOSITE[s.direction]) for s in scenes])}
    if len(colours) > 1:
        out["wrong colour"] = ids([dataclasses.replace(s, color=colours[(colours.index(s.color) + 1) % len(colours)])
                                   for s in scenes])
    return out


def memorise(groups: int, steps: int, seed: int = 0, group_weight: float = 0.0, broaden_at: int = 0,
             broaden_to: int = 64) -> list[dict]:
    """The ``memorise`` experiment (see the module doc); returns the evaluations."""
    import jax.numpy as jnp

    from vinf_jax.demo import train
    from vinf_jax.models.clip_text import tokenize

    ae = _shipped_vae()

    def videos(n, rng_seed):  # n groups of four one-clip videos: (latents, scenes, fps)
        scenes, fps, starts = train.random_videos(np.random.default_rng(rng_seed), n, 4, meet=4)
        return encode_clips(ae, [world.render(s, 8, float(f), start=int(st)) for s, f, st in zip(scenes, fps, starts)]), scenes, fps

    first = videos(groups, seed) + (groups,)
    wide = videos(broaden_to, seed + 200) + (broaden_to,) if broaden_at else None
    tok = _demo_tokenizer()
    p = train.PRESETS["full"]
    params, opt, step, loss, _ = _fresh_objective(steps, seed, groups=4, group_weight=group_weight)

    # Evaluated: the first four training groups, and four held-out groups (other spots, objects and ways) the
    # model never trains on: does what it learns for the training clips carry over to clips it has not seen?
    lat, scenes, fps, _ = first
    held_lat, held, held_fps = videos(4, seed + 100)
    sets = {"": (lat[:16], fps[:16], _prompt_sets(tok, scenes[:16])), "held-out ": (held_lat, held_fps, _prompt_sets(tok, held))}
    er = np.random.default_rng(9)
    bands = {f"{lo}-{hi}": (er.integers(lo, hi, 16), er.standard_normal(held_lat.shape).astype(np.float32))
             for lo, hi in ((0, 500), (500, 800), (800, 1000))}
    draws = dict(train.RECIPE, direction_groups=4, high_noise=0.0)
    rng, rows = np.random.default_rng(seed + 1), []
    for i in range(steps):
        pool_lat, pool_scenes, pool_fps, pool_groups = wide if wide and i >= broaden_at else first
        v = (rng.integers(0, pool_groups, 2)[:, None] * 4 + np.arange(4)).reshape(-1)
        t, noise = train.noise_draws(rng, (8,) + lat.shape[1:], draws)
        cap = ["" if rng.random() < p["caption_dropout"] else world.caption(pool_scenes[a]) for a in v]
        params, opt, _ = step(params, opt, jnp.asarray(pool_lat[v]), jnp.asarray(tokenize(tok, cap)), jnp.asarray(pool_fps[v]),
                              jnp.asarray(t), jnp.asarray(noise))
        if i % 200 == 0 or i == steps - 1:
            row = {"step": i}
            for tag, (x0, clip_fps, prompts) in sets.items():
                for name, (bt, bn) in bands.items():
                    r = {k: float(loss(params, jnp.asarray(x0), pr, jnp.asarray(clip_fps), jnp.asarray(bt), jnp.asarray(bn)))
                         for k, pr in prompts.items()}
                    row[tag + name] = {"right": r["right"], **{k: r[k] - r["right"] for k in r if k != "right"}}
            rows.append(row)
            print(f"step {i}: " + " | ".join(f"{b}: right {r['right']:.4f} flipped {r['flipped']:+.4f}"
                                             + (f" colour {r['wrong colour']:+.4f}" if "wrong colour" in r else "")
                                             for b, r in row.items() if b != "step"), flush=True)
    return rows


def band(lo: int, hi: int, steps: int, seed: int = 0) -> list[dict]:
    """The ``band`` experiment (see the module doc); returns the evaluations."""
    import jax.numpy as jnp

    from vinf_jax.demo import train
    from vinf_jax.models.clip_text import tokenize

    ae = _shipped_vae()

    def encode(scenes, frames, rng):  # one start frame drawn per clip, after the fps (the draws the results used)
        fps = rng.choice(world.FPS_CHOICES, size=len(scenes)).astype(np.float32)
        return encode_clips(ae, [world.render(s, frames, float(f), start=int(rng.integers(0, 256)))
                                 for s, f in zip(scenes, fps)]), fps

    rng = np.random.default_rng(seed)
    scenes = [world.random_scene(rng) for _ in range(512)]
    lat, fps = encode(scenes, 16, rng)
    held = [world.random_scene(rng) for _ in range(48)]
    hlat, hfps = encode(held, 8, rng)
    tok = _demo_tokenizer()
    p = train.PRESETS["full"]
    zero_snr = train.SCHEDULER.get("rescale_betas_zero_snr")
    train.SCHEDULER["rescale_betas_zero_snr"] = True  # read once, when the objective is built
    try:
        params, opt, step, loss, _ = _fresh_objective(steps, seed)
    finally:
        if zero_snr is None:
            del train.SCHEDULER["rescale_betas_zero_snr"]
        else:
            train.SCHEDULER["rescale_betas_zero_snr"] = zero_snr
    prompts = _prompt_sets(tok, held)
    hr = np.random.default_rng(9)
    ht, hn = hr.integers(lo, hi, 48), hr.standard_normal(hlat.shape).astype(np.float32)
    rows = []

    def evaluate(i):
        r = {k: float(np.mean([float(loss(params, jnp.asarray(hlat[j:j + 16]), v[j:j + 16], jnp.asarray(hfps[j:j + 16]),
                                          jnp.asarray(ht[j:j + 16]), jnp.asarray(hn[j:j + 16]))) for j in (0, 16, 32)]))
             for k, v in prompts.items()}
        rows.append({"step": i, **r})
        print(f"step {i}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.items())
              + f"  flipped - right {r['flipped'] - r['right']:+.4f}", flush=True)

    for i in range(steps):
        v, off = rng.integers(0, 512, 6), rng.integers(0, 9, 6)
        x0 = np.stack([lat[a, o:o + 8] for a, o in zip(v, off)])
        cap = ["" if rng.random() < p["caption_dropout"] else world.caption(scenes[a]) for a in v]
        t, noise = rng.integers(lo, hi, 6), rng.standard_normal(x0.shape).astype(np.float32)
        params, opt, _ = step(params, opt, jnp.asarray(x0), jnp.asarray(tokenize(tok, cap)), jnp.asarray(fps[v]),
                              jnp.asarray(t), jnp.asarray(noise))
        if i % 200 == 0 or i == steps - 1:
            evaluate(i)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("text", "readable", "band", "trail", "memorise"))
    ap.add_argument("--weights", type=Path, help="diffusers folder (default: the shipped weights)")
    ap.add_argument("--variant", default="", help="demo_direction.py variants the folder was trained with (a+b)")
    ap.add_argument("--t", type=int, nargs="+", default=[200, 400, 600, 700, 800, 900, 999])
    ap.add_argument("--t-range", type=int, nargs=2, default=[850, 950], metavar=("LO", "HI"), help="band: timesteps")
    ap.add_argument("--steps", type=int, default=600, help="band, memorise: training steps")
    ap.add_argument("--groups", type=int, default=4, help="memorise: groups of four clips")
    ap.add_argument("--group-weight", type=float, default=0.0, help="memorise: the trainer's group_weight")
    ap.add_argument("--broaden-at", type=int, default=0, help="memorise: from this step, train on other groups")
    ap.add_argument("--broaden-to", type=int, default=64, help="memorise: how many other groups")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    from benchmarks import demo_direction

    for v in filter(None, args.variant.split("+")):
        demo_direction.VARIANTS[v]()
    from vinf_jax.convert.videocrafter2 import convert
    from vinf_jax.demo.model import WEIGHTS
    from vinf_jax.loading import load_checkpoint

    if args.what in ("band", "memorise"):
        out = band(*args.t_range, args.steps) if args.what == "band" else memorise(
            args.groups, args.steps, group_weight=args.group_weight, broaden_at=args.broaden_at, broaden_to=args.broaden_to)
        if args.json:
            write_json(args.json, out)
        return 0
    weights = args.weights or WEIGHTS
    with tempfile.TemporaryDirectory() as tmp:
        ck = load_checkpoint(convert(None, Path(tmp) / "ck", base=weights))
        if args.what == "text":
            out = text_differences(ck)
            for word, row in out.items():
                print(f"{word} word changed: mean |difference| per token position {row}")
        elif args.what == "trail":
            out = trail_sides(ck)
        else:
            out = readable(Path(weights), ck, args.t)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
