"""Train the ``tiny-demo`` model from scratch on the synthetic world, with optax; deterministic.

    python -m vinf_jax.demo.train --out runs/demo          # the shipped model (see README "The demo")
    python -m vinf_jax.demo.train --out runs/quick --quick  # a few steps (minutes, mostly compiling)

Two stages, as latent diffusion models are trained:

1. the AutoencoderKL (our ``VAEDecoder`` plus a diffusers-layout encoder) on single frames:
   reconstruction MSE plus a small KL term; ``scaling_factor`` is then set so the latents of the
   world have unit standard deviation (what Stable Diffusion's 0.18215 does for its VAE);
2. the UNet3D (fps-conditioned) and the CLIP text encoder together, on latents of world clips,
   with the v-prediction loss on VideoCrafter2's noise schedule and 10% empty prompts (for
   classifier-free guidance).

Every ``probe_every`` steps the model samples one clip of each of the world's 32 prompts on the probe
seed with the pipeline itself (``vinf_jax.demo.probe``): colour / shape / direction accuracy.

The output folder is a diffusers text-to-video pipeline (``export``), plus ``loss.png`` (losses and
probes) and ``train_log.json`` (losses, probes, sizes, wall time, machine, versions).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from vinf_jax.output import jsonfile
from vinf_jax.demo import world
from vinf_jax.demo.probe import PROBE_SEEDS
from vinf_jax.demo.tokenizer import MAX_LENGTH

# VideoCrafter2's noise schedule and sampler settings, with v-prediction (the pipeline's solvers read the
# prediction type from this config): at t = 999 a clip keeps 6.8 % of its signal (terminal SNR 0.0047),
# and the epsilon loss weighs an error in the predicted clean clip by the SNR, so near t = 999 it barely
# cares whether the clip has the prompt's shape or direction (BENCHMARKS.md "Why the demo model ignored
# its prompts"); the v loss weighs it by SNR + 1.
SCHEDULER = {"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_schedule": "scaled_linear",
             "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "v_prediction", "clip_sample": False,
             "set_alpha_to_one": False, "steps_offset": 1, "trained_betas": None, "skip_prk_steps": True}
V_PREDICTION = SCHEDULER["prediction_type"] == "v_prediction"
OBJECT_LEVEL = -0.98  # frames in [-1, 1]: a pixel brighter than black by 1 % belongs to the object (edges included)
VOCAB = 576  # >= the demo tokenizer's 554 ids
UNET = dict(down_block_types=["CrossAttnDownBlock3D", "DownBlock3D"], up_block_types=["UpBlock3D", "CrossAttnUpBlock3D"],
            block_out_channels=[32, 64], layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
            cross_attention_dim=64)
TEXT = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH, hidden_act="quick_gelu", layer_norm_eps=1e-5)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 16, 32, 32], layers_per_block=1,
           norm_num_groups=4, up_block_types=["UpDecoderBlock2D"] * 4, scaling_factor=1.0)

# How the models are trained (both presets): the share of empty prompts (classifier-free guidance's
# unconditional), the share of a batch drawn from the noisiest timesteps, [high_noise_from, 1000) (where the
# prompt decides what the video shows), offset noise (a per-clip, per-channel constant added to the noise),
# the text encoder's learning rate relative to the UNet's, how often the probes run (0: never), the
# extra weight of the object's pixels in the autoencoder's loss, and of the frame-to-frame part of the
# UNet's error (``motion_weighted_mse``; 0 here: 4 did not teach the direction words, BENCHMARKS.md);
# cross_attn_all=1: cross-attention (and temporal attention) at every resolution; fresh_clips=1: new scenes
# rendered and encoded for every batch instead of windows of ``videos`` encoded videos (0 here: it did
# not teach the direction words either, BENCHMARKS.md); direction_groups=R (2 or 4): a batch is groups of R clips of
# one object on one spot at the clip's middle frame, moving R ways, sharing their noise and timestep (1: off);
# group_weight=W: with such groups, the part of the UNet's error that differs between a group's clips (the part only
# the direction word can explain) weighs 1 + W (``within_group_mse``; 0: off).
RECIPE = dict(caption_dropout=0.1, high_noise=0.3, high_noise_from=500, offset_noise=0.0, text_lr_scale=1.0,
              probe_every=600, cross_attn_all=1, vae_object_weight=30.0, motion_weight=0.0, fresh_clips=0,
              direction_groups=1, group_weight=0.0)
PRESETS = {  # steps and batch sizes; "full" is the shipped model, "quick" a seconds-long smoke run
    "full": dict(RECIPE, vae_steps=1200, vae_batch=16, videos=384, video_frames=40, clip_frames=8, unet_steps=2400,
                 unet_batch=6, lr=2e-3, vae_lr=3e-3, snapshot_every=600),
    "quick": dict(RECIPE, vae_steps=6, vae_batch=4, videos=4, video_frames=8, clip_frames=8, unet_steps=6,
                  unet_batch=2, lr=2e-3, vae_lr=3e-3, snapshot_every=0, probe_every=0),
}


def unet_layout(p: dict) -> dict:
    """The UNet's diffusers config: ``UNET``, with every block a cross-attention block if ``cross_attn_all``."""
    if not p["cross_attn_all"]:
        return UNET
    n = len(UNET["block_out_channels"])
    return dict(UNET, down_block_types=["CrossAttnDownBlock3D"] * n, up_block_types=["CrossAttnUpBlock3D"] * n)


def alphas_cumprod(cfg: dict = SCHEDULER) -> np.ndarray:
    """The schedule's alpha-bar per timestep (float64); with ``rescale_betas_zero_snr`` ending at exactly 0,
    as the samplers read that flag (zero terminal SNR)."""
    from vinf_jax.sampling.schedulers import zero_terminal_snr

    betas = np.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, cfg["num_train_timesteps"]) ** 2
    abar = np.cumprod(1.0 - betas)
    return zero_terminal_snr(abar) if cfg.get("rescale_betas_zero_snr") else abar


def random_frames(rng: np.random.Generator, n: int) -> np.ndarray:
    """n single frames of random scenes at random times, (n, H, W, 3) in [-1, 1]."""
    out = []
    for _ in range(n):
        scene = world.random_scene(rng)
        out.append(world.render(scene, 1, float(rng.choice(world.FPS_CHOICES)), start=int(rng.integers(0, 256)))[0])
    return np.stack(out) * 2 - 1


def _schedule(lr: float, steps: int):
    import optax

    warm = max(1, min(100, steps // 10))
    return optax.warmup_cosine_decay_schedule(0.0, lr, warm, max(steps, warm + 1), end_value=lr * 0.05)


def _optimizer(lr: float, steps: int, text_lr_scale: float | None = None):
    """AdamW with warm-up and cosine decay after clipping the global gradient norm; with
    ``text_lr_scale`` the params are {"unet", "text"} and the text encoder's rate is scaled."""
    import optax

    if text_lr_scale is None:
        return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(_schedule(lr, steps), b2=0.99, weight_decay=1e-4))
    adam = lambda scale: optax.adamw(_schedule(lr * scale, steps), b2=0.99, weight_decay=1e-4)
    labels = lambda params: {k: k for k in params}
    return optax.chain(optax.clip_by_global_norm(1.0),
                       optax.multi_transform({"unet": adam(1.0), "text": adam(text_lr_scale)}, labels))


def vae_objective(cfg, lr: float, steps: int, seed: int, object_weight: float = 0.0):
    """(params, opt_state, step, loss) of the autoencoder; ``loss(params, x, key) -> (total, mse)``
    (total: squared error with the object's pixels weighing ``1 + object_weight``, plus a small KL term),
    ``step(params, opt_state, x, key) -> (params, opt_state, mse)``, both jitted."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from vinf_jax.demo.autoencoder import AutoencoderKL

    graphdef, params = nnx.split(AutoencoderKL(cfg, rngs=nnx.Rngs(seed)), nnx.Param)
    opt = _optimizer(lr, steps)

    def loss_fn(params, x, key):
        m = nnx.merge(graphdef, params)
        mean, logvar = m.encode(x)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
        err = jnp.square(m.decode(z) - x)
        # The object covers ~4 % of a frame: unweighted, the black background dominates the loss and the
        # decoder learns blurry blobs whose colour and shape the detector cannot name (BENCHMARKS.md).
        w = 1.0 + object_weight * (jnp.max(x, -1, keepdims=True) > OBJECT_LEVEL)
        kl = 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
        return jnp.mean(w * err) / jnp.mean(w) + 1e-4 * kl, jnp.mean(err)

    @jax.jit
    def step(params, opt_state, x, key):
        (_, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, mse

    return params, opt.init(params), step, jax.jit(loss_fn), graphdef


def train_vae(cfg, p, seed, log):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    params, opt_state, step, _, graphdef = vae_objective(cfg, p["vae_lr"], p["vae_steps"], seed,
                                                         p["vae_object_weight"])
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    losses = []
    for i in range(p["vae_steps"]):
        x = jnp.asarray(random_frames(rng, p["vae_batch"]))
        params, opt_state, mse = step(params, opt_state, x, jax.random.fold_in(key, i))
        losses.append(float(mse))
        if i % 100 == 0 or i == p["vae_steps"] - 1:
            log(f"vae step {i}: mse {losses[-1]:.5f}")
    return nnx.merge(graphdef, params), losses


def vae_check(ae, seed: int, n: int = 96) -> dict:
    """The autoencoder's round trip (posterior mean, decoded) of ``n`` fresh frames, through the world's
    detector: the share whose colour and shape it still names, and the median centroid error in pixels.
    The UNet cannot draw what the decoder cannot: issue 23's first VAE named 55 % of colours, 52 % of shapes."""
    import jax
    import jax.numpy as jnp

    x = random_frames(np.random.default_rng(seed + 5), n)
    y = np.clip((np.asarray(jax.jit(lambda v: ae.decode(ae.encode(v)[0]))(jnp.asarray(x))) + 1) / 2, 0, 1)
    truth, got = world.detect_video((x + 1) / 2), world.detect_video(y)
    err = [float(np.linalg.norm(world.wrapped_step(a.centroid, b.centroid))) if b.found else float("inf")
           for a, b in zip(truth, got)]
    return {"color": float(np.mean([a.color == b.color for a, b in zip(truth, got)])),
            "shape": float(np.mean([a.shape == b.shape for a, b in zip(truth, got)])),
            "centroid_error_px": float(np.median(err))}


def random_videos(rng: np.random.Generator, n: int, groups: int = 1, meet: int = 0):
    """(scenes, fps, start frames) of ``n`` random videos of the world, in this order of draws. With ``groups``
    R (2 or 4), each video is followed by R - 1 others: the same object on the same spot at frame ``meet`` of
    the video, moving the other R - 1 ways of ``world.TURNS`` (R = 2: the opposite way); ``n * R`` in all."""
    scenes = [world.random_scene(rng) for _ in range(n)]
    fps, starts = rng.choice(world.FPS_CHOICES, size=n).astype(np.float32), rng.integers(0, 256, size=n)
    turn = lambda d, k: world.TURNS[(world.TURNS.index(d) + k * 4 // groups) % 4]
    scenes = [world.heading(s, turn(s.direction, k), int(st) + meet, float(f))
              for s, f, st in zip(scenes, fps, starts) for k in range(groups)]
    return scenes, np.repeat(fps, groups), np.repeat(starts, groups)


def encode_world(ae, p, seed, log):
    """Latent videos of ``videos`` random scenes (unscaled posterior means) and their scenes/fps."""
    import jax
    import jax.numpy as jnp

    scenes, fps, starts = random_videos(np.random.default_rng(seed + 1), p["videos"], p["direction_groups"],
                                        p["clip_frames"] // 2)
    enc = jax.jit(lambda x: ae.encode(x)[0])
    lat = []
    for s, f, k in zip(scenes, fps, starts):
        frames = world.render(s, p["video_frames"], float(f), start=int(k)) * 2 - 1
        lat.append(np.asarray(enc(jnp.asarray(frames))))
    log(f"encoded {len(lat)} videos of {p['video_frames']} frames")
    return np.stack(lat), scenes, fps, starts


def target(x0, noise, ab):
    """What the UNet learns to predict from x_t = sqrt(ab) x0 + sqrt(1 - ab) noise: v or the noise."""
    import jax.numpy as jnp

    if V_PREDICTION:
        return jnp.sqrt(ab) * noise - jnp.sqrt(1 - ab) * x0
    return noise


def motion_weighted_mse(err, motion_weight: float = 0.0):
    """mean(err^2) + motion_weight * mean((err - its mean over frames)^2); err is (B, F, h, w, c).

    The second term weighs the part of the error that changes from frame to frame -- where a clip moving
    the wrong way differs from the right one -- ``1 + motion_weight`` times the static part. It is a
    positive-definite reweighting of the same squared error, so its minimiser is still the conditional
    mean the sampler needs; it only moves the gradient towards motion, which the plain MSE all but ignores
    while the object's per-frame step is a fraction of a latent pixel (BENCHMARKS.md, issue 23)."""
    import jax.numpy as jnp

    loss = jnp.mean(jnp.square(err))
    if motion_weight:
        loss = loss + motion_weight * jnp.mean(jnp.square(err - jnp.mean(err, axis=1, keepdims=True)))
    return loss


def within_group_mse(err, groups: int):
    """mean((err - its mean over each group of ``groups`` consecutive clips)^2); err is (B, F, h, w, c).

    The clips of a group (``random_videos``, ``noise_draws``) share object, spot, noise and timestep and differ
    only in their direction, so their v targets differ by ``-sqrt(1 - ab) * (x0 - the group's mean x0)``: the
    shared noise cancels, and what is left is the part of the clip that only the direction word (or the faint
    signal in x_t) can tell. The plain MSE hides that part under the noise's far larger error at the noisiest
    timesteps (issue 23, BENCHMARKS.md); the trainer adds it ``group_weight`` times, a noise-free regression of
    the word's effect. Unlike ``motion_weighted_mse`` this couples the clips of a group, so the minimiser is
    no longer exactly each clip's conditional mean; the probes and held-out figures say what that costs."""
    import jax.numpy as jnp

    g = err.reshape((-1, groups) + err.shape[1:])
    return jnp.mean(jnp.square(g - jnp.mean(g, axis=1, keepdims=True)))


def unet_objective(unet_cfg, text_cfg, lr: float, steps: int, seed: int, text_lr_scale: float = 1.0,
                   motion_weight: float = 0.0, groups: int = 1, group_weight: float = 0.0):
    """(params, opt_state, step, loss, graphdefs) of the UNet + text encoder. ``loss(params, x0, ids,
    fps, t, noise)`` is the squared error of the prediction ``SCHEDULER`` names (v or epsilon) on its noise
    schedule, frame-to-frame changes weighted by ``1 + motion_weight`` (``motion_weighted_mse``);
    ``step`` takes the same batch and minimises that loss plus ``group_weight`` times the within-group part of
    the error (``within_group_mse``, groups of ``groups`` clips); ``loss`` stays the plain one, comparable
    between runs."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from vinf_jax.models.clip_text import CLIPTextModel
    from vinf_jax.models.unet3d import UNet3D

    ug, uparams = nnx.split(UNet3D(unet_cfg, rngs=nnx.Rngs(seed + 2)), nnx.Param)
    tg, tparams = nnx.split(CLIPTextModel(text_cfg, rngs=nnx.Rngs(seed + 3)), nnx.Param)
    params = {"unet": uparams, "text": tparams}
    opt = _optimizer(lr, steps, text_lr_scale)
    acp = jnp.asarray(alphas_cumprod(), jnp.float32)

    def error(params, x0, ids, fps_b, t, noise):
        ctx = nnx.merge(tg, params["text"])(ids)
        ab = acp[t][:, None, None, None, None]
        xt = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * noise
        out = nnx.merge(ug, params["unet"])(xt, t.astype(jnp.float32), ctx, fps_b)
        return out - target(x0, noise, ab)

    def loss_fn(params, *batch):
        return motion_weighted_mse(error(params, *batch), motion_weight)

    def train_loss(params, *batch):  # (what is minimised, the loss): group_weight times the within-group error added
        err = error(params, *batch)
        loss = motion_weighted_mse(err, motion_weight)
        return (loss + group_weight * within_group_mse(err, groups) if group_weight else loss), loss

    @jax.jit
    def step(params, opt_state, x0, ids, fps_b, t, noise):
        (_, loss), grads = jax.value_and_grad(train_loss, has_aux=True)(params, x0, ids, fps_b, t, noise)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return params, opt.init(params), step, jax.jit(loss_fn), (ug, tg)


def timesteps(rng: np.random.Generator, b: int, high_noise: float, high_noise_from: int = 500) -> np.ndarray:
    """``b`` training timesteps: uniform over [0, 1000), except a ``high_noise`` share drawn from
    [high_noise_from, 1000)."""
    t = rng.integers(0, 1000, size=b)
    return np.where(rng.random(b) < high_noise, high_noise_from + t * (1000 - high_noise_from) // 1000, t)


def noise_draws(rng: np.random.Generator, shape, p) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps, noise) of a batch of clips ``shape`` (b, frames, h, w, c). With ``direction_groups`` R the b
    clips are b / R groups (``random_videos``), and a group shares its timestep and noise: its clips differ only
    in the way the object moves, so only the direction word can tell their targets apart. Each clip's draws
    are still those of an independent sample, so the loss's minimiser (the conditional mean) is unchanged;
    only the gradient's noise around the word's part of it is smaller."""
    r, b = p["direction_groups"], shape[0]
    t = np.repeat(timesteps(rng, b // r, p["high_noise"], p["high_noise_from"]), r)
    noise = rng.standard_normal((b // r,) + tuple(shape[1:])).astype(np.float32)
    if p["offset_noise"]:  # a constant per clip and channel: the low frequencies the model must not trust
        noise += p["offset_noise"] * rng.standard_normal((b // r, 1, 1, 1, shape[-1])).astype(np.float32)
    return t, np.repeat(noise, r, axis=0)


def video_batches(latents, scenes, fps, p):
    """``draw(rng, b) -> (x0, captions, fps)``: random ``clip_frames`` windows of the encoded videos; with
    ``direction_groups`` R (videos stored in groups, ``random_videos``), b / R windows of whole groups."""
    n, length = latents.shape[:2]
    f, r = p["clip_frames"], p["direction_groups"]

    def draw(rng, b):
        base = rng.integers(0, n // r, size=b // r)
        off = np.repeat(rng.integers(0, length - f + 1, size=b // r), r)
        v = (base[:, None] * r + np.arange(r)).reshape(-1)
        return (np.stack([latents[vi, o:o + f] for vi, o in zip(v, off)]), [world.caption(scenes[vi]) for vi in v],
                fps[v])

    return draw


def fresh_batches(ae, scale: float, p):
    """``draw(rng, b) -> (x0, captions, fps)``: ``b`` new scenes at every call, rendered and encoded (posterior
    mean times ``scale``), so that no clip is seen twice: a model cannot tell a clip's direction from
    having seen its video before (384 videos make ~12 per caption)."""
    import jax
    import jax.numpy as jnp

    enc = jax.jit(lambda x: ae.encode(x)[0])
    f, r = p["clip_frames"], p["direction_groups"]

    def draw(rng, b):
        scenes, fps, starts = random_videos(rng, b // r, r, f // 2)
        frames = np.concatenate([world.render(s, f, float(k), start=int(st)) for s, k, st in zip(scenes, fps, starts)])
        lat = np.asarray(enc(jnp.asarray(frames * 2 - 1)))
        return lat.reshape(b, f, *lat.shape[1:]) * scale, [world.caption(s) for s in scenes], fps

    return draw


def train_unet(unet_cfg, text_cfg, draw, tokenizer, p, seed, log, snapshot=None, probe=None):
    """``draw(rng, b) -> (x0, captions, fps)`` gives each step's clips (``video_batches``, ``fresh_batches``);
    ``probe(step, unet, text) -> dict`` runs every ``probe_every`` steps and at the end; returns
    (unet, text, losses, probes)."""
    import jax.numpy as jnp
    from flax import nnx

    from vinf_jax.models.clip_text import tokenize

    params, opt_state, step, _, (ug, tg) = unet_objective(unet_cfg, text_cfg, p["lr"], p["unet_steps"], seed,
                                                          p["text_lr_scale"], p["motion_weight"],
                                                          p["direction_groups"], p["group_weight"])
    captions = world.all_prompts()
    ids_table = tokenize(tokenizer, captions + [""])
    index = {c: i for i, c in enumerate(captions)}
    rng = np.random.default_rng(seed + 4)
    b = p["unet_batch"]
    losses, probes = [], []
    for i in range(p["unet_steps"]):
        x0, clip_captions, clip_fps = draw(rng, b)
        rows = [index[c] for c in clip_captions]
        rows = [len(captions) if rng.random() < p["caption_dropout"] else r for r in rows]  # CFG's unconditional
        t, noise = noise_draws(rng, x0.shape, p)
        params, opt_state, loss = step(params, opt_state, jnp.asarray(x0), jnp.asarray(ids_table[rows]),
                                       jnp.asarray(clip_fps), jnp.asarray(t), jnp.asarray(noise))
        losses.append(float(loss))
        if i % 100 == 0 or i == p["unet_steps"] - 1:
            log(f"unet step {i}: loss {np.mean(losses[-100:]):.4f}")
        if snapshot and p["snapshot_every"] and (i + 1) % p["snapshot_every"] == 0 and i + 1 < p["unet_steps"]:
            snapshot(i + 1, nnx.merge(ug, params["unet"]), nnx.merge(tg, params["text"]), losses)
        if probe and p["probe_every"] and ((i + 1) % p["probe_every"] == 0 or i + 1 == p["unet_steps"]):
            probes.append({"step": i + 1, **probe(nnx.to_pure_dict(params["unet"]), nnx.to_pure_dict(params["text"]))})
            log("probe at step {step}: colour {color:.2f}, shape {shape:.2f}, direction {direction:.2f}".format(**probes[-1]))
    return nnx.merge(ug, params["unet"]), nnx.merge(tg, params["text"]), losses, probes


PROBE_COLOURS = {"color": (200, 30, 30), "shape": (30, 120, 30), "direction": (30, 60, 200)}


def loss_curve_png(path: Path, curves: dict[str, list[float]], probes: list[dict] = ()) -> None:
    """One panel per curve (log-scale loss against step, smoothed over 1% of the run), and with
    ``probes`` a last panel of their accuracies (0..1) against the same steps as the last curve; Pillow only."""
    from PIL import Image, ImageDraw

    w, h, pad = 480, 200, 36
    img = Image.new("RGB", (w, h * (len(curves) + bool(probes))), "white")
    d = ImageDraw.Draw(img)
    for row, (name, ys) in enumerate(curves.items()):
        y = np.log10(np.maximum(np.asarray(ys, np.float64), 1e-12))
        k = max(1, len(y) // 100)
        y = np.convolve(y, np.ones(k) / k, mode="valid")
        lo, hi = float(y.min()), float(y.max()) + 1e-9
        top = row * h
        d.rectangle([pad, top + 10, w - 10, top + h - pad], outline="black")
        pts = [(pad + (w - 10 - pad) * i / max(len(y) - 1, 1), top + 10 + (h - pad - 10) * (hi - v) / (hi - lo))
               for i, v in enumerate(y)]
        d.line(pts, fill=(200, 30, 30), width=2)
        d.text((pad + 6, top + 14), f"{name}: log10 loss {hi:.2f} .. {lo:.2f} over {len(ys)} steps", fill="black")
        d.text((pad, top + h - pad + 6), "step 0", fill="black")
        d.text((w - 80, top + h - pad + 6), f"step {len(ys)}", fill="black")
    if probes:
        top, last = len(curves) * h, max(len(list(curves.values())[-1]), 1)
        d.rectangle([pad, top + 10, w - 10, top + h - pad], outline="black")
        x = lambda step: pad + (w - 10 - pad) * step / last
        y = lambda v: top + 10 + (h - pad - 10) * (1 - v)
        for k, (name, colour) in enumerate(PROBE_COLOURS.items()):
            pts = [(x(r["step"]), y(r[name])) for r in probes]
            d.line(pts, fill=colour, width=2) if len(pts) > 1 else None
            for px, py in pts:
                d.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
            d.text((pad + 6 + 110 * k, top + 14), f"{name} {probes[-1][name]:.2f}", fill=colour)
        d.text((pad, top + h - pad + 6), "probe accuracy (0..1), single clips of every prompt", fill="black")
    tmp = path.with_name(f".{path.name}.partial.png")
    img.save(tmp)
    os.replace(tmp, path)


def probe_fn(ae, unet_cfg, text_cfg, vae_cfg: dict, tokenizer):
    """``probe(unet_params, text_params) -> dict``: single clips of every prompt on the probe seeds
    (``vinf_jax.demo.probe``), sampled by the pipeline itself, as the user's demo samples them."""
    from flax import nnx

    from vinf_jax.demo.probe import PROBE_SEEDS, probe, single_clip_config
    from vinf_jax.loading import Model
    from vinf_jax.models.vae import VAEConfig
    from vinf_jax.pipeline import VideoInfinityPipeline

    pure = nnx.to_pure_dict(nnx.state(ae, nnx.Param))
    decoder = {k: v for k, v in pure.items() if k not in ("encoder", "quant_conv")}
    pipe = VideoInfinityPipeline(Model("unet", unet_cfg), Model("text_encoder", text_cfg),
                                 Model("vae", VAEConfig.from_dict(vae_cfg), decoder), tokenizer, SCHEDULER)
    cfg = single_clip_config()

    def run(unet_params, text_params):
        pipe.load_params(unet=unet_params, text_encoder=text_params)
        return probe(pipe, cfg, PROBE_SEEDS)

    return run


def export(out: Path, ae, unet, text, unet_cfg, text_cfg, vae_cfg: dict, dtype) -> None:
    from flax import nnx

    from vinf_jax.convert.keymaps import unet_rename
    from vinf_jax.demo.export import torch_state_dict, write_component
    from vinf_jax.demo.tokenizer import write_tokenizer

    pure = lambda m: nnx.to_pure_dict(nnx.state(m, nnx.Param))
    write_component(out / "unet", {"_class_name": "UNet3DConditionModel", **unet_cfg.to_dict(), "sample_size": 8,
                                   "num_attention_heads": None, "act_fn": "silu"},
                    "diffusion_pytorch_model.safetensors", torch_state_dict(pure(unet), unet_rename, dtype=dtype))
    write_component(out / "text_encoder", {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
                                           **dataclasses.asdict(text_cfg)} | _special_ids(), "model.safetensors", torch_state_dict(pure(text), dtype=dtype))
    n = len(vae_cfg["block_out_channels"])
    write_component(out / "vae", {"_class_name": "AutoencoderKL", **vae_cfg, "down_block_types": ["DownEncoderBlock2D"] * n,
                                  "act_fn": "silu", "sample_size": world.SIZE},
                    "diffusion_pytorch_model.safetensors", torch_state_dict(pure(ae), dtype=dtype))
    write_tokenizer(out / "tokenizer")
    jsonfile.write_json(out / "scheduler" / "scheduler_config.json", SCHEDULER, sort_keys=True)


def _special_ids() -> dict:
    from vinf_jax.demo.tokenizer import vocab_and_merges

    vocab, _ = vocab_and_merges()
    return {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vinf_jax.demo.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="new output folder (diffusers layout + loss.png + train_log.json)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="full")
    ap.add_argument("--quick", action="store_true", help="same as --preset quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=INT", help="override a preset number")
    ap.add_argument("--dtype", choices=("float32", "float16"), default="float16", help="dtype of the written weights")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        print(f"error: --out {out} exists; choose a new folder", file=sys.stderr)
        return 2
    p = dict(PRESETS["quick" if args.quick else args.preset])
    for kv in args.set:
        k, _, v = kv.partition("=")
        if k not in p:
            print(f"error: --set {k}: unknown; known: {sorted(p)}", file=sys.stderr)
            return 2
        p[k] = type(p[k])(float(v)) if isinstance(p[k], float) else int(v)
    r = p["direction_groups"]
    if r not in (1, 2, 4) or p["unet_batch"] % r or (r > 1 and not p["fresh_clips"] and p["video_frames"] != p["clip_frames"]):
        print(f"error: --set direction_groups={r}: must be 1, 2 or 4 and divide unet_batch ({p['unet_batch']}); "
              f"a group meets at its clip's middle frame, so its videos must be one clip long (video_frames = "
              f"clip_frames = {p['clip_frames']}, or fresh_clips=1)", file=sys.stderr)
        return 2
    if p["group_weight"] < 0 or (p["group_weight"] and r == 1):
        print(f"error: --set group_weight={p['group_weight']}: must be >= 0, and weighs the error within direction "
              f"groups, so it needs direction_groups of 2 or 4 (now {r})", file=sys.stderr)
        return 2
    t0 = time.time()
    lines = []

    def log(msg):
        line = f"[{time.time() - t0:7.1f} s] {msg}"
        lines.append(line)
        print(line, flush=True)

    import jax
    from transformers import CLIPTokenizer

    from vinf_jax.demo.tokenizer import write_tokenizer
    from vinf_jax.models.clip_text import CLIPTextConfig
    from vinf_jax.models.unet3d import UNetConfig
    from vinf_jax.models.vae import VAEConfig

    tmp = out.with_name(f".{out.name}.partial")
    write_tokenizer(tmp / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(tmp / "tokenizer"))
    vae_cfg = VAEConfig.from_dict(VAE)
    ae, vae_losses = train_vae(vae_cfg, p, args.seed, log)
    t_vae = time.time() - t0
    vae_round_trip = vae_check(ae, args.seed)
    log("vae round trip: colour {color:.2f}, shape {shape:.2f}, centroid error {centroid_error_px:.2f} px"
        .format(**vae_round_trip))
    latents, scenes, fps, starts = encode_world(ae, p, args.seed, log)
    scale = float(1.0 / latents.std())
    log(f"latent std {latents.std():.4f} -> scaling_factor {scale:.5f}")
    unet_cfg, text_cfg = UNetConfig.from_dict(unet_layout(p), fps_cond=True), CLIPTextConfig.from_dict(TEXT)
    vae_out = {**VAE, "scaling_factor": scale}

    def snapshot(step, unet, text, losses):  # intermediate models, to look at while the run goes on
        folder = tmp / "snapshots" / f"step_{step}"
        export(folder, ae, unet, text, unet_cfg, text_cfg, vae_out, np.dtype(args.dtype))
        loss_curve_png(folder / "loss.png", {"VAE reconstruction MSE": vae_losses, "UNet v-prediction MSE": losses})
        log(f"snapshot at step {step}")

    probe = probe_fn(ae, unet_cfg, text_cfg, vae_out, tokenizer) if p["probe_every"] else None
    draw = fresh_batches(ae, scale, p) if p["fresh_clips"] else video_batches(latents * scale, scenes, fps, p)
    unet, text, unet_losses, probes = train_unet(unet_cfg, text_cfg, draw, tokenizer, p, args.seed, log, snapshot, probe)
    wall = time.time() - t0
    export(tmp, ae, unet, text, unet_cfg, text_cfg, vae_out, np.dtype(args.dtype))
    loss_curve_png(tmp / "loss.png", {"VAE reconstruction MSE": vae_losses, "UNet v-prediction MSE": unet_losses},
                   probes)
    from importlib.metadata import version

    jsonfile.write_json(tmp / "train_log.json", {
        "preset": p, "seed": args.seed, "wall_s": round(wall, 1), "vae_wall_s": round(t_vae, 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {jax.devices()[0].platform}",
        "versions": {k: version(k) for k in ("jax", "flax", "optax")},
        "final": {"vae_mse": float(np.mean(vae_losses[-50:])), "unet_loss": float(np.mean(unet_losses[-100:])),
                  "vae_round_trip": vae_round_trip},
        "probe_seeds": list(PROBE_SEEDS), "probes": probes, "log": lines})
    os.replace(tmp, out)
    log(f"wrote {out} ({wall:.0f} s of training)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
