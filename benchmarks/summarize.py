#!/usr/bin/env python
"""Print the results of a benchmark folder as the Markdown rows BENCHMARKS.md uses.

    python benchmarks/summarize.py DIR        # DIR holds unet_step.json, max_frames.json, generate.json, comm.json

Missing or partial files are reported as such; nothing here needs jax or a GPU.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(folder: Path, name: str):
    try:
        return json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return None


def gib(n):
    from benchmarks.common import fmt_bytes

    return "-" if not n else fmt_bytes(n)


def main(folder: str) -> int:
    d = Path(folder)
    us = load(d, "unet_step.json")
    print("## unet_step")
    if not us:
        print("(no unet_step.json)")
    else:
        env, t = us["env"], (us.get("torch") or {})
        tenv = t.get("env") or {}
        mm = us.get("matmul_peak") or {}
        print(f"device {env.get('jax_device')}; jax {env.get('jax')}, flax {env.get('flax')}; torch {tenv.get('torch', '-')}, "
              f"diffusers {tenv.get('diffusers', '-')}, CUDA {tenv.get('cuda', '-')}; {env.get('date')}; "
              f"bf16 matmul peak {mm.get('tflops', 0):.3g} TFLOP/s (JAX {mm.get('n')}^3); jax status {us.get('jax_status')}, "
              f"torch status {t.get('status')}{'; torch skipped: ' + t['skipped'] if t.get('skipped') else ''}")
        print("| frames | path | ms/step | back-to-back ms | frames/s | TFLOP (XLA) | TFLOP/s | of peak | peak memory | compile s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for run in us["runs"]:
            for name in ("jax", "jax_parallel", "jax_parallel_inputs", "torch", "torch_compile"):
                m = run.get(name)
                if not m:
                    continue
                if "error" in m:
                    print(f"| {run['frames']} | {name} | error: {m['error'][:80]} | | | | | | | |")
                    continue
                if "ms" not in m:  # --flops-only
                    ma = m.get("memory_analysis") or {}
                    print(f"| {run['frames']} | {name} | - | - | - | {(m.get('flops') or 0) / 1e12:.4g} | | | "
                          f"{gib(ma.get('total_bytes'))} (XLA analysis) | {m.get('compile_s', 0):.0f} |")
                    continue
                flops = m.get("flops") or ((run.get("jax") or {}).get("flops") if name.startswith("torch") else None)
                tfs = m.get("tflops_per_s") or m.get("tflops_per_s_xla_count")
                util = m.get("utilisation")
                print(f"| {run['frames']} | {name} | {m['ms']:.1f} | {m.get('ms_pipelined', float('nan')):.1f} | {m['frames_per_s']:.0f} | "
                      f"{(flops or 0) / 1e12:.3g} | {(tfs or 0):.3g} | {100 * (util or 0):.0f}% | "
                      f"{gib(m.get('peak_bytes_in_use'))} | {(m.get('compile_s') or m.get('first_call_s') or 0):.0f} |")
            if run.get("ratio_torch_over_jax"):
                print(f"| {run['frames']} | torch / jax | {run['ratio_torch_over_jax']:.2f} | | | | | | | |")
    mf = load(d, "max_frames.json")
    print("\n## max_frames")
    if not mf:
        print("(no max_frames.json)")
    else:
        s = mf["setup"]
        print(f"limit {gib(s['limit_bytes'])} ({s['limit_source']}), UNet params {gib(s['unet_param_bytes'])}, F={s['clip_frames']}")
        for name in ("step_only", "with_decode"):
            r = mf.get(name)
            if r:
                lo, hi = r["bracket"]
                print(f"- {name}: {r['max_frames']} frames per device ({r['max_clips']} clips); "
                      f"{'exact' if r['complete'] else f'bracket [{lo}, {hi}) clips'}; "
                      f"linear model {r.get('linear_prediction_clips')}")
        for p in mf.get("probes", []):
            print(f"  - k={p['clips']} ({p['frames']} frames){' +decode' if p['with_decode'] else ''}: "
                  f"{'fits' if p['fits'] else 'no'}, need {gib(p.get('predicted_bytes'))}, {p['reason'][:50]}, {p['seconds']:.0f} s")
    gen = load(d, "generate.json")
    print("\n## generate_full")
    if not gen:
        print("(no generate.json)")
    elif gen.get("skipped"):
        print(f"skipped: {gen['skipped']}")
    else:
        fc, lo = gen.get("first_call", {}), gen.get("loop_only", {})
        print(f"{gen['setup']['clips']} clip(s) x {gen['setup']['frames_per_clip']} frames, {gen['setup']['steps']} steps, "
              f"{gen.get('dtype')}: build {gen.get('build_s', 0):.0f} s; first call {fc.get('wall_s', 0):.1f} s; "
              f"loop only {lo.get('wall_s', 0):.2f} s (median step {lo.get('step_ms_median') or float('nan'):.1f} ms); "
              f"decode {gen.get('decode_s', float('nan')):.2f} s; non-finite: {lo.get('non_finite') or fc.get('non_finite')}; "
              f"peak {gib((gen.get('device_memory') or {}).get('peak_bytes_in_use'))}")
    cm = load(d, "comm.json")
    print("\n## comm")
    if not cm:
        print("(no comm.json)")
    else:
        print(f"match {cm['match']}; {cm['bytes_per_step'] / 2 ** 20:.1f} MiB sent per device per step; step "
              f"{cm.get('step_ms') or float('nan'):.1f} ms [{cm.get('step_source')}]")
        for name, sch in (cm.get("schemes") or {}).items():
            print(f"- exchange {name}: {sch['bytes_per_step'] / 1e9:.3f} GB ({gib(sch['bytes_per_step'])}) per device per step, "
                  f"match {sch['match']}")
        for p in cm["projection"]:
            frac = p.get("fraction_of_step")
            print(f"- {p['link']}: {p['comm_ms']:.1f} ms" + (f" ({100 * frac:.0f}% of the step)" if frac else ""))
    half_precision_table(load(d, "half_precision.json"))
    print("\n## acceptance (issue 16, GPU)")
    print("| criterion | measured | target | ok |")
    print("|---|---|---|---|")
    for name, value, target, ok in acceptance(us, gen, cm):
        print(f"| {name} | {value} | {target} | {ok} |")
    return 0


def half_precision_table(hp) -> None:
    """float16 vs bfloat16 (vs float32) on the full UNet step and VAE decode (benchmarks/half_precision.py)."""
    print("\n## half_precision (float16 vs bfloat16)")
    if not hp:
        print("(no half_precision.json)")
        return
    print(f"device {hp['env'].get('jax_device')}; {hp['setup']['frames']} frames at {hp['setup']['video']}")
    print("| dtype | UNet step ms (batch 2) | eps rel. err vs float32 | VAE decode ms | frames rel. err |")
    print("|---|---|---|---|---|")
    for name in ("float32", "float16", "bfloat16"):
        r = hp.get(name) or {}
        if "error" in r:
            print(f"| {name} | error: {r['error'][:80]} | | | |")
            continue
        cell = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
        print(f"| {name} | {cell((r.get('unet') or {}).get('ms'), '{:.1f}')} | {cell(r.get('eps_rel_err'), '{:.2e}')} | "
              f"{cell((r.get('vae') or {}).get('ms'), '{:.1f}')} | {cell(r.get('frames_rel_err'), '{:.2e}')} |")


def acceptance(us, gen, cm) -> list[tuple[str, str, str, str]]:
    """(criterion, measured, target, yes/no/-) rows from the JSON files; '-' where not measured."""
    rows = []

    def row(name, value, target, fmt, ok):
        rows.append((name, "-" if value is None else fmt.format(value), target,
                     "-" if value is None or target == "-" else ("yes" if ok(value) else "NO")))

    run = next((r for r in (us or {}).get("runs", []) if r.get("frames") == 24), None) or \
        next(iter((us or {}).get("runs", [])), {})
    ms = lambda name: (run.get(name) or {}).get("ms")  # noqa: E731
    ratio = lambda a, b: ms(a) / ms(b) if ms(a) and ms(b) else None  # noqa: E731
    frames = run.get("frames", "?")
    row(f"clip-parallel (kv) / vanilla step, {frames} frames", ratio("jax_parallel", "jax"), "<= 1.05", "{:.3f}", lambda v: v <= 1.05)
    row(f"clip-parallel (inputs) / vanilla step, {frames} frames", ratio("jax_parallel_inputs", "jax"), "<= 1.05", "{:.3f}",
        lambda v: v <= 1.05)
    row("vanilla / diffusers fp16 eager", ratio("jax", "torch"), "<= 0.5", "{:.3f}", lambda v: v <= 0.5)
    row("vanilla / diffusers torch.compile", ratio("jax", "torch_compile"), "<= 0.7", "{:.3f}", lambda v: v <= 0.7)
    util = (run.get("jax") or {}).get("utilisation")
    row("vanilla step, of the bf16 matmul peak", None if util is None else 100 * util, ">= 50%", "{:.1f}%", lambda v: v >= 50)
    fps = None
    if gen and not gen.get("skipped"):
        lo, st = gen.get("loop_only") or {}, gen.get("setup") or {}
        if lo.get("wall_s") and gen.get("decode_s") is not None:
            fps = st.get("clips", 1) * st.get("frames_per_clip", 0) / (lo["wall_s"] + gen["decode_s"])
    row("30-step generation + decode, frames/s per GPU", fps, ">= 8", "{:.2f}", lambda v: v >= 8)
    for name, sch in ((cm or {}).get("schemes") or {}).items():
        row(f"bytes sent per device per step, exchange {name} (D=8)", sch["bytes_per_step"] / 1e9,
            "<= 2.2 GB" if name == "inputs" else "-", "{:.3f} GB", lambda v, n=name: n != "inputs" or v <= 2.2)
    return rows


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
