#!/usr/bin/env python
"""Bytes every device sends per UNet evaluation of the clip-parallel UNet, measured from XLA's HLO
and checked against the analytic count of docs/method.md §7.

    python benchmarks/comm.py                      # full size, D = 8 virtual CPU devices (~10 s)
    python benchmarks/comm.py --stage compiled     # the HLO after XLA's CPU passes (~20-40 s more)
    python benchmarks/comm.py --small              # tiny UNet, seconds
    python benchmarks/comm.py --step-json unet_step.json --out comm.json
    python benchmarks/comm.py --exchange inputs    # only one scheme of plugin_configs.attn.exchange

No weights are allocated: parameters and inputs are ``jax.ShapeDtypeStruct``s carrying their
shardings, and the program is lowered (``--stage compiled``: also compiled) for D virtual CPU
devices. The lowered HLO is the default: it carries the dtypes the program asks for, while the
CPU compiler widens bf16 collectives to f32 (GPU backends do not); element counts agree in both.
Every collective in the HLO runs once per evaluation (the UNet has no loops), so the total of
their sizes is the traffic of one guided UNet call. Both schemes of ``plugin_configs.attn.exchange``
are measured (``kv``: temporal attention sends k and v, packed; ``inputs``: it sends its input rows,
half the bytes). The script exits with status 1 if, for either, the measured collectives, elements
or bytes differ from the analytic count.

Counting ("bytes sent by one interior device"):
  collective-permute  the operand (one halo to one neighbour);
  all-gather          (D - 1) x the operand (its rows go to every other device);
  all-reduce          payload size (a ring all-reduce sends 2 (D - 1) / D of it; reported apart).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="tiny UNet, 128x128 video, F=8 (CPU seconds)")
    p.add_argument("--devices", type=int, default=8, help="D, virtual CPU devices = clips (default 8)")
    p.add_argument("--clips", type=int, default=None, help="N, clips in the video (default D)")
    p.add_argument("--frames", type=int, default=None, help="F, frames per clip (default 24; 8 with --small)")
    p.add_argument("--height", type=int, default=None, help="video height in pixels (default 320; 128 with --small)")
    p.add_argument("--width", type=int, default=None, help="video width in pixels (default 512; 128 with --small)")
    p.add_argument("--batch", type=int, default=2, help="UNet batch (2 = classifier-free guidance)")
    p.add_argument("--dtype", default="bfloat16", help="activation and parameter dtype (default bfloat16)")
    p.add_argument("--attn-padding", type=int, default=8, help="plugin_configs.attn.padding P (default 8)")
    p.add_argument("--top-k", type=int, default=16, help="plugin_configs.attn.top_k K (default 16)")
    p.add_argument("--conv-padding", type=int, default=4, help="plugin_configs.conv_layer.padding Pc (default 4)")
    p.add_argument("--gn-sync", action="store_true", help="plugin_configs.group_norm.sync = true (default off, as shipped)")
    p.add_argument("--exchange", choices=("both", "kv", "inputs"), default="both",
                   help="plugin_configs.attn.exchange scheme(s) to measure (default both; the JSON's top level is kv "
                        "when measured)")
    p.add_argument("--stage", choices=("compiled", "lowered"), default="lowered",
                   help="HLO as lowered (default; dtypes as the program asks) or after XLA's CPU optimisations")
    p.add_argument("--step-ms", type=float, default=None, help="UNet step time in ms for the projection")
    p.add_argument("--step-json", default=None, help="read the step time from a unet_step.py JSON")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--dump-hlo", default=None, help="write the HLO text here")
    return p.parse_args(argv)


ARGS = _parse_args()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402

common.virtual_cpu_devices(ARGS.devices)  # before jax is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from vinf_jax.config import AttnConfig, ConvLayerConfig, GroupNormConfig, VideoInfinityConfig  # noqa: E402
from vinf_jax.loading import Model, abstract_params  # noqa: E402
from vinf_jax.models.unet3d import UNetConfig  # noqa: E402
from vinf_jax.parallel.apply import sharded_unet  # noqa: E402
from vinf_jax.parallel.mesh import clip_mesh, clip_sharding, replicated  # noqa: E402

LINKS = (("NVLink 900 GB/s", 900e9), ("PCIe 64 GB/s", 64e9), ("100 Gb/s network (12.5 GB/s)", 12.5e9))
DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
               "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
KINDS = ("collective-permute", "all-gather", "all-reduce", "reduce-scatter", "all-to-all")


# --------------------------------------------------------------------------- HLO parsing
_SHAPE = re.compile(r"\b([a-z]+[0-9]*)\[([0-9,]*)\]")
_OP = re.compile(r"=\s*(?P<type>\([^=]*?\)|[a-z]+[0-9]*\[[0-9,]*\](?:\{[^}]*\})?)\s+"
                 r"(?P<op>collective-permute|all-gather|all-reduce|reduce-scatter|all-to-all)"
                 r"(?P<suffix>-start|-done)?\((?P<rest>.*)$")
_GROUPS = re.compile(r"replica_groups=\{\{([0-9,]*)\}")
_GROUPS_IOTA = re.compile(r"replica_groups=\[(\d+),(\d+)\]")


def shape_size(text: str) -> tuple[int, int]:
    """(elements, bytes) of every array shape in an HLO type string (a tuple type sums its parts)."""
    elems = nbytes = 0
    for dt, dims in _SHAPE.findall(text):
        if dt not in DTYPE_BYTES:
            continue
        n = int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
        elems += n
        nbytes += n * DTYPE_BYTES[dt]
    return elems, nbytes


def group_size(rest: str, default: int) -> int:
    m = _GROUPS.search(rest)
    if m:
        return len([x for x in m.group(1).split(",") if x])
    m = _GROUPS_IOTA.search(rest)
    if m:
        return int(m.group(2))
    return default


def collectives_from_hlo(text: str, devices: int) -> list[dict]:
    """Every collective of an HLO module's text: kind, dtype, result bytes and bytes sent per device.

    Async pairs are counted once, at their ``-done`` (whose result is the collective's output).
    """
    found = []
    for line in text.splitlines():
        m = _OP.search(line)
        if not m or m.group("suffix") == "-start":
            continue
        kind, typ, rest = m.group("op"), m.group("type"), m.group("rest")
        if m.group("suffix") == "-done":
            # the -done's operand is the -start; its groups live on the -start line, so assume all D
            g = devices
        else:
            g = group_size(rest, devices)
        out_elems, out_bytes = shape_size(typ)
        if kind in ("collective-permute", "all-reduce"):
            share = (1, 1)  # the whole operand (all-reduce: the payload)
        elif kind == "reduce-scatter":
            share = (g - 1, 1)
        else:  # all-gather, all-to-all: the result but the own slice
            share = (g - 1, g)
        dtypes = sorted({dt for dt, _ in _SHAPE.findall(typ) if dt in DTYPE_BYTES})
        found.append({"kind": kind, "type": typ.split("{")[0], "dtypes": dtypes, "group": g,
                      "sent_elements": out_elems * share[0] // share[1],
                      "sent_bytes": out_bytes * share[0] // share[1]})
    return found


# --------------------------------------------------------------------------- analytic count
def temporal_layers(cfg: UNetConfig, h: int, w: int) -> list[tuple[str, int, int, int]]:
    """Every temporal layer of the UNet as (kind, h, w, width), from the config alone.

    kind "conv": a TemporalConvLayer on ``width`` channels; "transformer": a temporal transformer
    whose attentions have inner width ``width`` (heads x head size). Walks diffusers'
    UNet3DConditionModel: transformer_in, down blocks, mid block, up blocks.
    """
    chans = list(cfg.block_out_channels)
    dh = cfg.head_dims()
    last = len(chans) - 1
    cross_down = [t == "CrossAttnDownBlock3D" for t in cfg.down_block_types]
    cross_up = [t == "CrossAttnUpBlock3D" for t in cfg.up_block_types]
    layers = [("transformer", h, w, 8 * dh[0])]  # transformer_in: 8 heads of attention_head_dim
    sizes = [(h, w)]
    for i, c in enumerate(chans):
        for _ in range(cfg.layers_per_block):
            layers.append(("conv", h, w, c))
            if cross_down[i]:
                layers.append(("transformer", h, w, (c // dh[i]) * dh[i]))
        if i < last:  # Conv2d(3, stride 2, padding 1): ceil(h / 2)
            h, w = (h + 1) // 2, (w + 1) // 2
            sizes.append((h, w))
    c = chans[-1]
    layers += [("conv", h, w, c), ("transformer", h, w, (c // dh[-1]) * dh[-1]), ("conv", h, w, c)]
    rchans, rdh = chans[::-1], dh[::-1]
    for i, c in enumerate(rchans):
        for _ in range(cfg.layers_per_block + 1):
            layers.append(("conv", h, w, c))
            if cross_up[i]:
                layers.append(("transformer", h, w, (c // rdh[i]) * rdh[i]))
        if i < last:  # upsample to the resolution of the matching down level
            h, w = sizes[last - 1 - i]
    return layers


def analytic_bytes(cfg: UNetConfig, vi: VideoInfinityConfig, *, devices: int, clips: int, frames: int,
                   h: int, w: int, batch: int, itemsize: int) -> dict:
    """The spec's section 5, per interior device, per UNet evaluation: elements and bytes per collective kind.

    Activations (halos, global rows) move in the program's dtype (``itemsize``); group-norm
    statistics in f32. Temporal attention sends k and v packed (``exchange`` "kv": one ppermute per
    direction and one gather per attention, two rows per frame) or its input rows ("inputs": the
    same collectives, one row per frame; the input is as wide as k).
    """
    local_clips = clips // devices
    pc, p = vi.conv_layer.padding, vi.attn.padding
    shared = len(vi.shared_frames(frames, clips))
    g_rows = vi.global_rows(frames, clips)
    kinds = ("collective-permute", "all-gather", "all-reduce")
    elements = dict.fromkeys(kinds, 0)
    nbytes = dict.fromkeys(kinds, 0)
    counts = dict.fromkeys(kinds, 0)
    per_layer = []
    groups = cfg.norm_num_groups
    # synced norm: all_gather of every clip's (mean, centred sum of squares) per (batch, group)
    gn_elems = (devices - 1) * local_clips * 2 * batch * groups
    rows_per_frame = 2 if vi.attn.exchange == "kv" else 1

    def add(row, kind, n_ops, elems, size):
        counts[kind] += n_ops
        elements[kind] += elems
        nbytes[kind] += elems * size
        row[kind] += elems * size

    for kind, lh, lw, width in temporal_layers(cfg, h, w):
        row = {"kind": kind, "h": lh, "w": lw, "width": width, **dict.fromkeys(kinds, 0)}
        frame = batch * lh * lw * width  # elements of one frame of the layer input (conv) or of k / v
        if devices > 1:
            if kind == "conv":
                if pc > 0:  # Pc frames of the input to each neighbour
                    add(row, "collective-permute", 2, 2 * pc * frame, itemsize)
                if vi.group_norm.sync:  # conv1..conv4 norms: one all_gather of per-clip statistics each (f32)
                    add(row, "all-gather", 4, 4 * gn_elems, 4)
            else:
                for _attn in ("attn1", "attn2"):
                    sent = rows_per_frame * frame
                    if p > 0:  # P frames to each neighbour
                        add(row, "collective-permute", 2, 2 * p * sent, itemsize)
                    if g_rows == clips * shared:  # all_gather of every clip's shared rows
                        add(row, "all-gather", 1, (devices - 1) * local_clips * shared * sent, itemsize)
                    else:  # G < N * shared: psum of a G-row buffer
                        add(row, "all-reduce", 1, g_rows * sent, itemsize)
                if vi.group_norm.sync:
                    add(row, "all-gather", 1, gn_elems, 4)
        per_layer.append(row)
    n_conv = sum(1 for r in per_layer if r["kind"] == "conv")
    n_tt = len(per_layer) - n_conv
    return {"bytes": nbytes, "elements": elements, "counts": counts, "total": sum(nbytes.values()),
            "temporal_convs": n_conv, "temporal_transformers": n_tt, "temporal_attentions": 2 * n_tt,
            "shared_per_clip": shared, "global_rows": g_rows, "layers": per_layer}


# --------------------------------------------------------------------------- main
def measure(args, cfg: UNetConfig, vi: VideoInfinityConfig, mesh, *, frames: int, lh: int, lw: int) -> dict:
    """Lower (or compile) the clip-parallel UNet for ``vi`` and compare its collectives with the analytic count."""
    devices, clips, dtype = args.devices, vi.num_clips, jnp.dtype(args.dtype)
    t0 = time.perf_counter()
    abstract = abstract_params("unet", cfg)
    model = Model("unet", cfg, abstract)
    rep = replicated(mesh)
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, dtype, sharding=rep), abstract)
    x = jax.ShapeDtypeStruct((args.batch, clips * frames, lh, lw, cfg.in_channels), dtype,
                             sharding=clip_sharding(mesh, 5, 1))
    t = jax.ShapeDtypeStruct((), jnp.int32, sharding=rep)
    ctx = jax.ShapeDtypeStruct((args.batch, clips, 77, cfg.cross_attention_dim), dtype,
                               sharding=clip_sharding(mesh, 4, 1))
    fps = jax.ShapeDtypeStruct((args.batch,), jnp.float32, sharding=rep)
    f = jax.jit(sharded_unet(model, vi, clips, mesh))
    t_build = time.perf_counter() - t0

    t0 = time.perf_counter()
    lowered = f.lower(params, x, t, ctx, fps)
    t_lower = time.perf_counter() - t0
    t_compile = None
    if args.stage == "compiled":
        t0 = time.perf_counter()
        text = lowered.compile().as_text()
        t_compile = time.perf_counter() - t0
    else:
        text = lowered.as_text(dialect="hlo")
    if args.dump_hlo:
        with open(f"{args.dump_hlo}.{vi.attn.exchange}" if args.exchange == "both" else args.dump_hlo, "w") as fh:
            fh.write(text)

    found = collectives_from_hlo(text, devices)
    measured = {k: 0 for k in KINDS}
    elements = {k: 0 for k in KINDS}
    counts = {k: 0 for k in KINDS}
    for c in found:
        measured[c["kind"]] += c["sent_bytes"]
        elements[c["kind"]] += c["sent_elements"]
        counts[c["kind"]] += 1
    dtypes = sorted({d for c in found for d in c["dtypes"]})
    ana = analytic_bytes(cfg, vi, devices=devices, clips=clips, frames=frames, h=lh, w=lw, batch=args.batch,
                         itemsize=dtype.itemsize)
    measured_total = sum(measured.values())
    # Collectives and elements must match exactly. Bytes must too, except where the CPU compiler
    # widened a bf16 collective to f32 (compiled stage only; GPU backends move bf16 as is).
    counts_ok = all(counts[k] == ana["counts"].get(k, 0) for k in KINDS)
    elements_ok = all(elements[k] == ana["elements"].get(k, 0) for k in KINDS)
    bytes_ok = all(measured[k] == ana["bytes"].get(k, 0) for k in KINDS)
    widened = args.stage == "compiled" and not bytes_ok and elements_ok and "f32" in dtypes
    ok = counts_ok and elements_ok and (bytes_ok or widened)
    # Traffic in the program's dtype: the analytic bytes once the elements agree.
    sent_total = ana["total"] if ok else measured_total
    return {
        "exchange": vi.attn.exchange,
        "seconds": {"build": t_build, "lower": t_lower, "compile": t_compile},
        "measured": {"bytes": measured, "elements": elements, "counts": counts, "total": measured_total,
                     "dtypes": dtypes, "widened_to_f32_by_cpu_compiler": widened,
                     "all_reduce_ring_sent": measured["all-reduce"] * 2 * (devices - 1) // devices},
        "bytes_per_step": sent_total,
        "analytic": {k: v for k, v in ana.items() if k != "layers"},
        "analytic_layers": ana["layers"],
        "match": ok,
    }


def main(args) -> int:
    small = args.small
    frames = args.frames or (8 if small else 24)
    height = args.height or (128 if small else 320)
    width = args.width or (128 if small else 512)
    devices = args.devices
    clips = args.clips or devices
    lh, lw = height // 8, width // 8
    cfg = UNetConfig.from_dict(common.unet_dict(small))
    schemes = ("kv", "inputs") if args.exchange == "both" else (args.exchange,)
    vis = {e: VideoInfinityConfig(attn=AttnConfig(padding=args.attn_padding, top_k=args.top_k, exchange=e),
                                  conv_layer=ConvLayerConfig(padding=args.conv_padding),
                                  group_norm=GroupNormConfig(sync=args.gn_sync), num_clips=clips) for e in schemes}
    vis[schemes[0]].check_num_frames(frames)
    assert clips % devices == 0, (clips, devices)
    assert len(jax.devices()) == devices, (jax.devices(), devices)
    mesh = clip_mesh(devices)
    per_scheme = {e: measure(args, cfg, vi, mesh, frames=frames, lh=lh, lw=lw) for e, vi in vis.items()}

    step_ms, step_src = args.step_ms, "--step-ms" if args.step_ms else None
    if step_ms is None and args.step_json:
        step_ms, step_src = step_from_json(args.step_json, frames)
    for r in per_scheme.values():
        r["projection"] = [{"link": name, "bytes_per_s": bw, "comm_ms": r["bytes_per_step"] / bw * 1e3,
                            "fraction_of_step": (r["bytes_per_step"] / bw * 1e3 / step_ms) if step_ms else None}
                           for name, bw in LINKS]
    vi = vis[schemes[0]]
    setup = {"small": small, "devices": devices, "clips": clips, "frames_per_clip": frames,
             "video": [height, width], "latent": [lh, lw], "batch": args.batch, "dtype": args.dtype,
             "attn_padding": vi.attn.padding, "top_k": vi.attn.top_k, "conv_padding": vi.conv_layer.padding,
             "group_norm_sync": vi.group_norm.sync, "edge_mode": vi.edge_mode, "stage": args.stage,
             "exchange": schemes[0]}
    # the top level is the first scheme (kv, the default) as before; every scheme under "schemes"
    result = {"benchmark": "comm", "env": common.env_info(),
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "setup": setup, **per_scheme[schemes[0]],
              "match": all(r["match"] for r in per_scheme.values()),
              "step_ms": step_ms, "step_source": step_src,
              "schemes": {e: {k: v for k, v in r.items() if k != "analytic_layers"} for e, r in per_scheme.items()}}
    common.write_json(args.out, result)
    for e, r in per_scheme.items():
        print_report({**result, **r, "setup": {**setup, "exchange": e}})
    if len(per_scheme) == 2:
        kv, inp = per_scheme["kv"]["bytes_per_step"], per_scheme["inputs"]["bytes_per_step"]
        print(f"exchange inputs / kv: {common.fmt_bytes(inp)} / {common.fmt_bytes(kv)} = {inp / kv:.3f} "
              f"({inp / 1e9:.3f} GB vs {kv / 1e9:.3f} GB per device per step)")
    return 0 if result["match"] else 1


def step_from_json(path: str, frames: int) -> tuple[float | None, str | None]:
    """A guided step of one device holding one clip of ``frames`` frames, from a unet_step.py JSON:
    the clip-parallel path if it was timed (that is what each of the D devices runs), else the
    vanilla UNet; that frame count if present, else the first run."""
    import json

    data = json.load(open(path))
    dev = data.get("env", {}).get("jax_device", "?")
    runs = data.get("runs", [])
    for name in ("jax_parallel", "jax"):
        timed = [r for r in runs if (r.get(name) or {}).get("ms")]
        pick = next((r for r in timed if r.get("frames") == frames), timed[0] if timed else None)
        if pick is not None:
            return float(pick[name]["ms"]), f"{os.path.basename(path)}: {name}, {pick['frames']} frames, {dev}"
    return None, None


def print_report(r: dict) -> None:
    s, m, a = r["setup"], r["measured"], r["analytic"]
    fb = common.fmt_bytes
    print(f"clip-parallel UNet, D={s['devices']} devices, N={s['clips']} clips x F={s['frames_per_clip']} frames, "
          f"{s['video'][0]}x{s['video'][1]} (latent {s['latent'][0]}x{s['latent'][1]}), batch {s['batch']}, {s['dtype']}, "
          f"P={s['attn_padding']} K={s['top_k']} Pc={s['conv_padding']} gn_sync={s['group_norm_sync']} "
          f"exchange={s['exchange']}")
    sec = r["seconds"]
    print(f"build {sec['build']:.1f} s, lower {sec['lower']:.1f} s"
          + (f", compile {sec['compile']:.1f} s" if sec["compile"] is not None else "") + f" ({s['stage']} HLO)")
    print(f"temporal layers: {a['temporal_convs']} convs, {a['temporal_transformers']} transformers "
          f"({a['temporal_attentions']} attentions); shared frames per clip {a['shared_per_clip']}, G={a['global_rows']}")
    print(f"{'collective':<20}{'ops':>5}{'analytic':>9}{'elements sent':>16}{'analytic':>16}"
          f"{'bytes sent':>16}{'analytic':>16}")
    for k in KINDS:
        if m["counts"][k] or a["counts"].get(k):
            print(f"{k:<20}{m['counts'][k]:>5}{a['counts'].get(k, 0):>9}{m['elements'][k]:>16,}"
                  f"{a['elements'].get(k, 0):>16,}{m['bytes'][k]:>16,}{a['bytes'].get(k, 0):>16,}")
    print(f"{'total bytes sent per device per UNet evaluation':<66}{m['total']:>16,}{a['total']:>16,}"
          f"  ({fb(a['total'])}; HLO dtypes {m['dtypes']})")
    if m["widened_to_f32_by_cpu_compiler"]:
        print("note: the CPU compiler widened bf16 collectives to f32; elements match, bytes are counted in bf16")
    print("MATCH: measured == analytic" if r["match"] else "MISMATCH: measured != analytic")
    step = r["step_ms"]
    print("projected communication per UNet step (no overlap with compute)"
          + (f", step {step:.1f} ms [{r['step_source']}]" if step else ""))
    for p in r["projection"]:
        frac = f"  = {100 * p['fraction_of_step']:.1f}% of the step" if p["fraction_of_step"] is not None else ""
        print(f"  {p['link']:<32}{p['comm_ms']:>10.2f} ms{frac}")


if __name__ == "__main__":
    sys.exit(main(ARGS))
