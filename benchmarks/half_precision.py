#!/usr/bin/env python
"""float16 against bfloat16 on the full VideoCrafter2 UNet and VAE decoder: speed and error, same run.

    python benchmarks/half_precision.py --out half_precision.json        # full size, GPU (gpu_check.sh)
    python benchmarks/half_precision.py --small                          # tiny model, CPU (checks the script)

The questions it answers (issue: "float16 is float16"): is float16 as fast as bfloat16 on this GPU, and
how far is each from float32 on the same random weights and inputs?

- UNet: one guided step (batch 2, as classifier-free guidance runs it) at ``--frames`` frames,
  vanilla temporal layers; weights drawn once in float32 on the device, cast as the pipeline casts
  them (norms stay float32); median step time per dtype and the relative L2 error of the noise
  prediction against float32.
- VAE decoder: ``--frames`` frames decoded per dtype (the pipeline's decode: float32 scaling, then the
  params' dtype), time and relative L2 error of the frames against float32. This decides the
  decoder's dtype (docs/method.md §9).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402

DTYPES = ("float32", "float16", "bfloat16")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="tiny UNet and VAE at 64x64, 8 frames (CPU)")
    p.add_argument("--frames", type=int, default=None, help="frames (default 24; 8 with --small)")
    p.add_argument("--steps", type=int, default=10, help="timed calls per dtype (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    a.frames = a.frames or (8 if a.small else 24)
    a.size = (64, 64) if a.small else (320, 512)
    return a


def rel(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from vinf_jax.loading import Model
    from vinf_jax.models.unet3d import UNetConfig
    from vinf_jax.models.vae import VAEConfig
    from vinf_jax.pipeline import _cast_params

    res = {"benchmark": "half_precision", "env": common.env_info(),
           "setup": {"small": args.small, "frames": args.frames, "video": list(args.size), "guided_batch": 2}}
    unet = Model("unet", UNetConfig.from_dict(common.unet_dict(args.small)))
    vae = Model("vae", VAEConfig.from_dict(common.vae_dict(args.small)))
    unet_p32 = common.random_params_on_device(unet.abstract, jnp.float32, seed=0)
    vae_p32 = common.random_params_on_device(vae.abstract, jnp.float32, seed=1)
    h, w = args.size[0] // 8, args.size[1] // 8
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, args.frames, h, w, 4)), jnp.float32)
    ctx = jnp.asarray(rng.standard_normal((2, 77, unet.config.cross_attention_dim)), jnp.float32)
    z = jnp.asarray(rng.standard_normal((args.frames, h, w, 4)), jnp.float32)
    t, fps = jnp.full((2,), 500.0, jnp.float32), jnp.full((2,), 24.0, jnp.float32)

    step = jax.jit(lambda p, x, c: unet.apply(p, x, t, c, fps))
    decode = jax.jit(lambda p, z: jax.lax.map(vae.module(p).decode, z[:, None])[:, 0].astype(jnp.float32))

    outs = {}
    for name in DTYPES:
        dt = jnp.dtype(name)
        cast = lambda tree: _cast_params(tree, lambda a: a, dt)  # noqa: E731 (norms stay float32)
        up, vp = cast(unet_p32), cast(vae_p32)
        xs, cs = x.astype(dt), ctx.astype(dt)
        row = {}
        try:
            eps = np.asarray(step(up, xs, cs), np.float32)
            row["unet"] = common.time_jax(step, (up, xs, cs), args.steps, args.warmup)
            frames = np.asarray(decode(vp, z))
            row["vae"] = common.time_jax(decode, (vp, z), max(2, args.steps // 3), 1)
            outs[name] = (eps, frames)
            row["finite"] = bool(np.isfinite(eps).all() and np.isfinite(frames).all())
        except Exception as e:  # noqa: BLE001 (a dtype that fails is a result too)
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        res[name] = row
        common.write_json(args.out, res)
        print(f"{name}: unet {row.get('unet', {}).get('ms', float('nan')):.1f} ms/step, "
              f"vae {row.get('vae', {}).get('ms', float('nan')):.1f} ms / {args.frames} frames", flush=True)
    if "float32" in outs:
        for name in ("float16", "bfloat16"):
            if name in outs:
                res[name]["eps_rel_err"] = rel(outs[name][0], outs["float32"][0])
                res[name]["frames_rel_err"] = rel(outs[name][1], outs["float32"][1])
    common.write_json(args.out, res)
    print("| dtype | UNet step ms (guided, batch 2) | eps rel. err vs float32 | VAE decode ms | frames rel. err |")
    print("| --- | --- | --- | --- | --- |")
    for name in DTYPES:
        r = res[name]
        print(f"| {name} | {r.get('unet', {}).get('ms', float('nan')):.1f} | {r.get('eps_rel_err', 0.0):.2e} | "
              f"{r.get('vae', {}).get('ms', float('nan')):.1f} | {r.get('frames_rel_err', 0.0):.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
