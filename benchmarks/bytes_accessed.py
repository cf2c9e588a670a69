#!/usr/bin/env python
"""XLA's estimate of the bytes one device reads and writes per UNet evaluation: the clip-parallel UNet
(one interior device of D) against the vanilla UNet on the same frames, from compiled programs.

    python benchmarks/bytes_accessed.py                    # full size, D = 8 virtual CPU devices (minutes)
    python benchmarks/bytes_accessed.py --small            # tiny UNet (seconds)
    python benchmarks/bytes_accessed.py --exchange inputs --out bytes.json

No weights are allocated: parameters and inputs are ``jax.ShapeDtypeStruct``s. Both programs are
compiled for the CPU and ``compiled.cost_analysis()`` gives XLA's "bytes accessed" and "flops" of
the per-device program (the SPMD partition for the clip-parallel one). The figure is the HLO cost
model's sum over operations of operand and result bytes after fusion: a proxy for HBM traffic that
does not depend on the machine, not a measurement. The CPU compiler fuses less than the GPU one, so
the ratio, not the absolute figure, is the point.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="tiny UNet, 128x128 video, F=8")
    p.add_argument("--devices", type=int, default=8, help="D, virtual CPU devices = clips (default 8)")
    p.add_argument("--frames", type=int, default=None, help="F, frames per clip (default 24; 8 with --small)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--batch", type=int, default=2, help="UNet batch (2 = classifier-free guidance)")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--exchange", default=None, help="plugin_configs.attn.exchange (kv or inputs; default: the config's)")
    p.add_argument("--gn-sync", action="store_true", help="plugin_configs.group_norm.sync = true")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p.parse_args(argv)


ARGS = _parse_args()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402

common.virtual_cpu_devices(ARGS.devices)  # before jax is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from vinf_jax.config import AttnConfig, GroupNormConfig, VideoInfinityConfig  # noqa: E402
from vinf_jax.loading import Model, abstract_params  # noqa: E402
from vinf_jax.models.unet3d import UNetConfig  # noqa: E402
from vinf_jax.parallel.apply import sharded_unet  # noqa: E402
from vinf_jax.parallel.mesh import clip_mesh, clip_sharding, replicated  # noqa: E402


def cost(compiled) -> dict:
    c = compiled.cost_analysis()
    c = c[0] if isinstance(c, (list, tuple)) else c
    return {"bytes_accessed": float(c.get("bytes accessed", 0.0)), "flops": float(c.get("flops", 0.0))}


def main(args) -> int:
    frames = args.frames or (8 if args.small else 24)
    height = args.height or (128 if args.small else 320)
    width = args.width or (128 if args.small else 512)
    d = n = args.devices
    dtype = jnp.dtype(args.dtype)
    lh, lw = height // 8, width // 8
    cfg = UNetConfig.from_dict(common.unet_dict(args.small))
    attn = AttnConfig() if args.exchange is None else AttnConfig(exchange=args.exchange)
    vi = VideoInfinityConfig(attn=attn, group_norm=GroupNormConfig(sync=args.gn_sync), num_clips=n)
    abstract = abstract_params("unet", cfg)
    model = Model("unet", cfg, abstract)
    results = {}

    # vanilla: one device, one clip of F frames, the prompt shared by its frames
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, dtype), abstract)
    x = jax.ShapeDtypeStruct((args.batch, frames, lh, lw, cfg.in_channels), dtype)
    t = jax.ShapeDtypeStruct((), jnp.int32)
    ctx = jax.ShapeDtypeStruct((args.batch, 77, cfg.cross_attention_dim), dtype)
    fps = jax.ShapeDtypeStruct((args.batch,), jnp.float32)
    t0 = time.perf_counter()
    vanilla = jax.jit(lambda p, x, t, c, f: model.module(p)(x, t, c, f)).lower(params, x, t, ctx, fps).compile()
    results["vanilla"] = {**cost(vanilla), "compile_s": time.perf_counter() - t0}

    # clip-parallel: D devices, one clip each; cost_analysis is the per-device program's
    mesh = clip_mesh(d)
    rep = replicated(mesh)
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, dtype, sharding=rep), abstract)
    x = jax.ShapeDtypeStruct((args.batch, n * frames, lh, lw, cfg.in_channels), dtype, sharding=clip_sharding(mesh, 5, 1))
    t = jax.ShapeDtypeStruct((), jnp.int32, sharding=rep)
    ctx = jax.ShapeDtypeStruct((args.batch, n, 77, cfg.cross_attention_dim), dtype, sharding=clip_sharding(mesh, 4, 1))
    fps = jax.ShapeDtypeStruct((args.batch,), jnp.float32, sharding=rep)
    t0 = time.perf_counter()
    par = jax.jit(sharded_unet(model, vi, n, mesh)).lower(params, x, t, ctx, fps).compile()
    results["parallel"] = {**cost(par), "compile_s": time.perf_counter() - t0}

    ratio = results["parallel"]["bytes_accessed"] / results["vanilla"]["bytes_accessed"]
    flops_ratio = results["parallel"]["flops"] / results["vanilla"]["flops"]
    out = {"benchmark": "bytes_accessed", "env": common.env_info(),
           "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
           "setup": {"small": args.small, "devices": d, "clips": n, "frames_per_clip": frames,
                     "video": [height, width], "batch": args.batch, "dtype": args.dtype,
                     "attn": {"padding": vi.attn.padding, "top_k": vi.attn.top_k,
                              "exchange": getattr(vi.attn, "exchange", "kv")},
                     "conv_padding": vi.conv_layer.padding, "group_norm_sync": vi.group_norm.sync},
           **results, "ratio_bytes_parallel_over_vanilla": ratio, "ratio_flops_parallel_over_vanilla": flops_ratio}
    common.write_json(args.out, out)
    fb = common.fmt_bytes
    s = out["setup"]
    print(f"per-device UNet evaluation, F={frames} frames, {height}x{width}, batch {args.batch}, {args.dtype}; "
          f"clip-parallel D={d} (P={s['attn']['padding']} K={s['attn']['top_k']} exchange={s['attn']['exchange']} "
          f"Pc={s['conv_padding']} gn_sync={s['group_norm_sync']})")
    for name in ("vanilla", "parallel"):
        r = results[name]
        print(f"  {name:<10} bytes accessed {fb(r['bytes_accessed']):>12}  flops {r['flops'] / 1e12:8.3f} T"
              f"  (compile {r['compile_s']:.0f} s)")
    print(f"  ratio parallel / vanilla: bytes {ratio:.3f}x, flops {flops_ratio:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
