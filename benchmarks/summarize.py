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
            for name in ("jax", "jax_parallel", "torch"):
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
                flops = m.get("flops") or (run.get("jax") or {}).get("flops")
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
        for p in cm["projection"]:
            frac = p.get("fraction_of_step")
            print(f"- {p['link']}: {p['comm_ms']:.1f} ms" + (f" ({100 * frac:.0f}% of the step)" if frac else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
