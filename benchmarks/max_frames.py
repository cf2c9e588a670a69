#!/usr/bin/env python
"""The most frames one device can hold for a guided (batch 2) step of the clip-parallel UNet,
with and without a VAE decode of those frames. JAX, bf16, random weights. ``--batch 1`` measures
T2V-Turbo's step (one pass, no CFG batch; its three projections are 0.37 M parameters more).

    python benchmarks/max_frames.py --out max_frames.json             # full size, 320x512, F=24, GPU
    python benchmarks/max_frames.py --small --mem-limit-mb 256          # tiny models, CPU, seconds

A device holds k clips of F frames (frames per device = k * F, how Video-Infinity lays a video
out); the search is over k. Each probe compiles the step for k clips, asks XLA how many bytes
the program needs (``memory_analysis``), and runs it once unless that already exceeds the
device's memory; a run that fails with RESOURCE_EXHAUSTED does not fit. k = 1 and 2 give a
linear model of memory against frames, whose prediction seeds a bisection; the search stops
when the bracket closes or ``--max-seconds`` is spent, and reports the bracket it has.

"With decode" keeps the VAE decoder's parameters resident too and, after the step, decodes all
k * F frames (in chunks of ``--decode-chunk``, one ``lax.map``) to float32 RGB.

On the CPU nothing fails for lack of memory (the process would swap or be killed), so there
``--mem-limit-mb`` is required and decides from ``memory_analysis`` alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="tiny UNet and VAE at 64x64, F=8 (CPU)")
    p.add_argument("--clip-frames", type=int, default=None, help="F, frames per clip (default 24; 8 with --small)")
    p.add_argument("--height", type=int, default=None, help="video height (default 320; 64 with --small)")
    p.add_argument("--width", type=int, default=None, help="video width (default 512; 64 with --small)")
    p.add_argument("--dtype", default=None,
                   help="parameter and activation dtype (default bfloat16; float32 on the CPU, whose XLA "
                        "backend rejects some bf16 dots of the clip-parallel path: 'Unsupported element type "
                        "for DotThunk::Execute: BF16 x BF16 = F32', seen at 3 clips)")
    p.add_argument("--batch", type=int, default=2, choices=(1, 2),
                   help="UNet batch: 2 = classifier-free guidance, 1 = T2V-Turbo (guidance embedded)")
    p.add_argument("--max-seconds", type=float, default=240, help="stop probing after this many seconds")
    p.add_argument("--max-clips", type=int, default=64, help="never probe more clips than this")
    p.add_argument("--decode-chunk", type=int, default=8, help="frames per VAE decode chunk")
    p.add_argument("--no-decode", action="store_true", help="skip the search with a VAE decode")
    p.add_argument("--mem-limit-mb", type=float, default=None,
                   help="device memory to fit in (default: the device's bytes_limit; required on the CPU)")
    p.add_argument("--seed-json", default=None,
                   help="unet_step.py JSON with memory_analysis at F and 2F frames: skips compiling k = 1, 2")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    a = p.parse_args(argv)
    a.clip_frames = a.clip_frames or (8 if a.small else 24)
    a.height = a.height or (64 if a.small else 320)
    a.width = a.width or (64 if a.small else 512)
    return a


def is_oom(e: Exception) -> bool:
    text = str(e)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


class Prober:
    """Compiles and runs the guided step (optionally + decode) for k clips; remembers every probe."""

    def __init__(self, args):
        import jax
        import jax.numpy as jnp
        from vinf_jax.config import VideoInfinityConfig
        from vinf_jax.loading import Model, abstract_params
        from vinf_jax.models.unet3d import UNetConfig
        from vinf_jax.models.vae import VAEConfig, VAEDecoder
        from vinf_jax.parallel.apply import sharded_unet
        from vinf_jax.parallel.mesh import clip_mesh
        from flax import nnx

        self.jax, self.jnp, self.args = jax, jnp, args
        self.VideoInfinityConfig, self.sharded_unet = VideoInfinityConfig, sharded_unet
        self.dev = jax.devices()[0]
        self.cpu = self.dev.platform == "cpu"
        args.dtype = args.dtype or ("float32" if self.cpu else "bfloat16")
        self.dtype = jnp.dtype(args.dtype)
        self.cfg = UNetConfig.from_dict(common.unet_dict(args.small))
        if args.batch == 1:  # T2V-Turbo-v2's UNet: the guidance and motion projections
            self.cfg = dataclasses.replace(self.cfg, time_cond_proj_dim=256, motion_cond_proj_dim=256)
        abstract = abstract_params("unet", self.cfg)
        self.model = Model("unet", self.cfg, abstract)
        self.params = common.random_params_on_device(abstract, self.dtype, seed=0)
        self.param_bytes = common.tree_bytes(self.params)
        vcfg = VAEConfig.from_dict(common.vae_dict(args.small))
        vgraph, vstate = nnx.split(nnx.eval_shape(lambda: VAEDecoder(vcfg, rngs=nnx.Rngs(0))))
        vabstract = nnx.to_pure_dict(vstate)
        self.vae_params = None if args.no_decode else common.random_params_on_device(vabstract, self.dtype, seed=1)
        self.vae_bytes = 0 if self.vae_params is None else common.tree_bytes(self.vae_params)

        def decode_all(vparams, latents):
            """latents (T, h, w, 4) -> frames (T, 8h, 8w, 3) float32, ``chunk`` frames at a time."""
            state = jax.tree.map(lambda x: x, vstate)
            nnx.replace_by_pure_dict(state, vparams)
            vae = nnx.merge(vgraph, state)
            t = latents.shape[0]
            chunk = min(args.decode_chunk, t)
            n = math.ceil(t / chunk)
            pad = n * chunk - t
            z = jnp.pad(latents, ((0, pad), (0, 0), (0, 0), (0, 0))).reshape((n, chunk) + latents.shape[1:])
            frames = jax.lax.map(vae.decode, z)
            return frames.reshape((n * chunk,) + frames.shape[2:])[:t]

        self.decode = jax.jit(decode_all)
        self.mesh = clip_mesh([self.dev])
        lim = args.mem_limit_mb * 2 ** 20 if args.mem_limit_mb else common.device_memory(self.dev).get("bytes_limit")
        if lim is None:
            raise SystemExit("no device memory limit known: pass --mem-limit-mb (required on the CPU)")
        self.limit = int(lim)
        self.probes = []
        self.on_probe = lambda: None  # main() saves the JSON after every probe

    def _inputs(self, k):
        jax, jnp, cfg, a = self.jax, self.jnp, self.cfg, self.args
        frames = k * a.clip_frames
        key = jax.random.key(k)
        b = a.batch
        x = jax.random.normal(key, (b, frames, a.height // 8, a.width // 8, cfg.in_channels), self.dtype)
        ctx = jax.random.normal(jax.random.fold_in(key, 1), (b, k, 77, cfg.cross_attention_dim), self.dtype)
        return x, jnp.asarray(500, jnp.int32), ctx, jnp.full((b,), 24.0, jnp.float32)

    def probe(self, k: int, with_decode: bool) -> dict:
        jax = self.jax
        a = self.args
        rec = {"clips": k, "frames": k * a.clip_frames, "with_decode": with_decode}
        t0 = time.perf_counter()
        try:
            vi = self.VideoInfinityConfig(num_clips=k)
            step = jax.jit(self.sharded_unet(self.model, vi, k, self.mesh))
            x, t, ctx, fps = self._inputs(k)
            compiled = step.lower(self.params, x, t, ctx, fps).compile()
            mem = common.memory_analysis(compiled) or {}
            rec["step_bytes"] = mem.get("total_bytes")
            need = (mem.get("total_bytes") or 0) + (self.vae_bytes if with_decode else 0)
            dec_compiled = None
            if with_decode:
                lat_shape = jax.ShapeDtypeStruct((k * a.clip_frames,) + x.shape[2:], self.dtype)
                dec_compiled = self.decode.lower(self.vae_params, lat_shape).compile()
                dmem = common.memory_analysis(dec_compiled) or {}
                rec["decode_bytes"] = dmem.get("total_bytes")
                # during the decode: both parameter sets, the latents and the decode program's own bytes
                need = max(need, self.param_bytes + x.size * x.dtype.itemsize + (dmem.get("total_bytes") or 0))
            rec["predicted_bytes"] = need
            rec["compile_s"] = time.perf_counter() - t0
            if need > self.limit:
                rec.update(fits=False, reason="memory_analysis exceeds the limit")
            elif self.cpu:
                jax.block_until_ready(compiled(self.params, x, t, ctx, fps))  # exercises the path; tiny on the CPU
                rec.update(fits=True, reason="memory_analysis within the limit")
            else:
                eps = compiled(self.params, x, t, ctx, fps)
                if with_decode:
                    frames = dec_compiled(self.vae_params, eps[0])
                    jax.block_until_ready(frames)
                    del frames
                jax.block_until_ready(eps)
                del eps
                rec.update(fits=True, reason="ran")
            del x, ctx
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
            rec.update(fits=False, reason=f"RESOURCE_EXHAUSTED: {str(e).splitlines()[0][:200]}")
        rec["seconds"] = time.perf_counter() - t0
        rec.update({k2: v for k2, v in common.device_memory(self.dev).items() if k2 == "peak_bytes_in_use"})
        self.probes.append(rec)
        self.on_probe()
        print(f"  k={k:>3} clips ({rec['frames']:>4} frames){' +decode' if with_decode else '':<8} "
              f"{'fits' if rec['fits'] else 'does not fit':<13} need {common.fmt_bytes(rec.get('predicted_bytes'))} "
              f"of {common.fmt_bytes(self.limit)} [{rec['reason'][:60]}] {rec['seconds']:.1f} s", flush=True)
        return rec


def seed_points(path: str, args) -> dict | None:
    """{1: bytes, 2: bytes} of a guided step at F and 2F frames from a unet_step.py JSON (XLA's
    memory_analysis of the same program shape), so the search can skip compiling k = 1 and 2.
    None unless that run used the same model size, video size and dtype."""
    import json

    clip_frames = args.clip_frames
    try:
        data = json.load(open(path))
        runs = {r["frames"]: r for r in data.get("runs", [])}
        setup = data["setup"]
    except (OSError, ValueError, KeyError):
        return None
    if (setup.get("small"), setup.get("video"), setup.get("jax_dtype")) != (args.small, [args.height, args.width], args.dtype):
        return None
    for path_name in ("jax_parallel", "jax"):
        pts = {k: (runs.get(k * clip_frames, {}).get(path_name) or {}).get("memory_analysis", {}) for k in (1, 2)}
        pts = {k: v.get("total_bytes") for k, v in pts.items()}
        if all(pts.values()):
            return {"source": f"{path}: {path_name}", **pts}
    return None


def search(prober: Prober, deadline: float, max_clips: int, seeds: dict | None = None) -> dict:
    """Largest k whose step fits. Two points (k = 1, 2: probed, or seeded from a unet_step JSON)
    give a linear memory model; its prediction is probed first, then its neighbour, then bisection."""
    lo, hi = 0, max_clips + 1  # lo fits (0: none known), hi does not
    if seeds:
        b1, b2 = seeds[1], seeds[2]
    else:
        first = prober.probe(1, False)
        if not first["fits"]:
            return {"max_clips": 0, "bracket": [0, 1], "complete": True, "linear_prediction_clips": None}
        lo, b1, b2 = 1, first.get("predicted_bytes"), None
        if hi > 2 and time.perf_counter() < deadline:
            second = prober.probe(2, False)
            lo, hi = (2, hi) if second["fits"] else (lo, 2)
            b2 = second.get("predicted_bytes")
    pred = int(1 + (prober.limit - b1) // (b2 - b1)) if (b1 and b2 and b2 > b1) else None
    if pred is not None:
        pred = max(1, min(pred, max_clips))
    guess, first_probe = pred, True
    while hi - lo > 1 and time.perf_counter() < deadline:
        k = guess if (guess is not None and lo < guess < hi) else (lo + hi) // 2
        rec = prober.probe(k, False)
        if rec["fits"]:
            lo = k
        else:
            hi = k
        # right after the prediction, step to its neighbour (the model is rarely off by more); then bisect
        guess = (k + 1 if rec["fits"] else k - 1) if (first_probe and pred is not None) else None
        first_probe = False
    return {"max_clips": lo, "bracket": [lo, hi], "complete": hi - lo <= 1, "linear_prediction_clips": pred,
            "seeded_from": seeds.get("source") if seeds else None}


def search_with_decode(prober: Prober, deadline: float, step_max: int, step_complete: bool) -> dict:
    """Largest k whose step and decode both fit: never more than the step alone, so from there down."""
    lo, hi, k, first = 0, step_max + 1, step_max, True
    while hi - lo > 1 and time.perf_counter() < deadline:
        rec = prober.probe(k, True)
        if rec["fits"]:
            lo = k
        else:
            hi = k
        k = k - 1 if (first and not rec["fits"]) else (lo + hi) // 2
        first = False
    return {"max_clips": lo, "bracket": [lo, hi], "complete": hi - lo <= 1 and step_complete}


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    prober = Prober(args)
    import jax

    print(f"max frames per device: {jax.devices()[0].device_kind if hasattr(jax.devices()[0], 'device_kind') else jax.devices()[0]}, "
          f"limit {common.fmt_bytes(prober.limit)}, UNet params {common.fmt_bytes(prober.param_bytes)}, "
          f"VAE params {common.fmt_bytes(prober.vae_bytes)}, F={args.clip_frames}, {args.height}x{args.width}, batch {args.batch}", flush=True)
    deadline = t_start + args.max_seconds
    f = args.clip_frames
    res = {"benchmark": "max_frames", "command": " ".join(["python", os.path.relpath(sys.argv[0])] + sys.argv[1:]),
           "env": common.env_info(),
           "setup": {"small": args.small, "clip_frames": f, "video": [args.height, args.width], "batch": args.batch,
                     "dtype": args.dtype, "limit_bytes": prober.limit, "limit_source": "--mem-limit-mb" if args.mem_limit_mb else "bytes_limit",
                     "unet_param_bytes": prober.param_bytes, "vae_param_bytes": prober.vae_bytes,
                     "decode_chunk": args.decode_chunk, "max_seconds": args.max_seconds},
           "probes": prober.probes}
    prober.on_probe = lambda: common.write_json(args.out, res)
    # the step search gets most of the time; the decode search starts from its answer
    budget = args.max_seconds if args.no_decode else 0.7 * args.max_seconds
    seeds = seed_points(args.seed_json, args) if args.seed_json else None
    if args.seed_json:
        print(f"seeds from {args.seed_json}: {seeds}", flush=True)
    step = search(prober, t_start + budget, args.max_clips, seeds)
    res["step_only"] = {**step, "max_frames": step["max_clips"] * f}
    common.write_json(args.out, res)
    if not args.no_decode and step["max_clips"] > 0:
        dec = search_with_decode(prober, deadline, step["max_clips"], step["complete"])
        res["with_decode"] = {**dec, "max_frames": dec["max_clips"] * f}
    res["seconds"] = time.perf_counter() - t_start
    common.write_json(args.out, res)
    for name in ("step_only", "with_decode"):
        r = res.get(name)
        if r:
            lo, hi = r["bracket"]
            state = "exact" if r["complete"] else f"bracket [{lo * f}, {hi * f}) frames, stopped by --max-seconds"
            print(f"{name:<12} max {r['max_frames']:>5} frames per device ({r['max_clips']} clips of {f}); {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
