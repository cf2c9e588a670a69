"""Seams of long videos: Video-Infinity against independent clips, on the shipped tiny-demo model.

    python benchmarks/seams.py --seeds 2 3 4 5 6 --json benchmarks/results/seams.json --docs docs

For each seed, the demo config (configs/demo.json: 8 clips of 8 frames, two prompts) is generated
twice on the same noise: as configured (Video-Infinity: local + global context, conv halos) and as
independent clips (attn.padding=0, attn.top_k=0, conv_layer.padding=0). Two seam figures per run:

- centroid: median jump of the object's centroid across clip boundaries / median step inside clips
  (needs the synthetic world's detector);
- general: ``vinf_jax.output.seams`` (frame change across boundaries / median change inside clips), the
  measure every generation reports.

Pooled over seeds, plus the prompt checks (object found, colour, direction). ``--docs`` writes the
contact sheets of the first seed for the README.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import REPO, env_info, repo_relative, write_json  # noqa: E402
from vinf_jax.demo.evaluate import INDEPENDENT, evaluate, generate, load_demo_config  # noqa: E402


def pooled(results: list[dict]) -> dict:
    seams = [s for r in results for s in r["centroid_seams"] if np.isfinite(s)]
    steps = [r["centroid_step"] for r in results]
    general = [s for r in results for s in r["seam_metric"]["seams"] if np.isfinite(s)]
    return {"centroid_ratio": float(np.median(seams) / np.median(steps)), "general_median": float(np.median(general)),
            "found": float(np.mean([r["found"] for r in results])),
            "color": float(np.mean([r["color"] for r in results])),
            "direction": float(np.mean([r["direction"] for r in results]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "demo.json"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--docs", help="folder for the README's contact sheets (first seed)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (both runs)")
    args = ap.parse_args(argv)
    from vinf_jax.output.contact_sheet import write_contact_sheet
    from vinf_jax.pipeline import VideoInfinityPipeline

    cfgs = {"video_infinity": load_demo_config(args.config, args.set),
            "independent": load_demo_config(args.config, args.set + list(INDEPENDENT))}
    pipe = VideoInfinityPipeline.from_pretrained(cfgs["video_infinity"].model)
    shown = repo_relative(args.config)
    out = {"env": env_info(), "config": shown, "seeds": args.seeds, "runs": {}}
    for name, cfg in cfgs.items():
        runs = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            frames = generate(pipe, cfg, seed)
            r = evaluate(frames, cfg.pipe.prompts, cfg.video_infinity.num_clips)
            r.update(seed=seed, seconds=round(time.perf_counter() - t0, 1))
            runs.append(r)
            print(f"{name:15s} seed {seed}: centroid ratio {r['centroid_ratio']:.2f}, general median "
                  f"{r['seam_metric']['median']:.2f}, found {r['found']:.2f}, colour {r['color']:.2f}, "
                  f"direction {r['direction']:.2f} {r['directions']} ({r['seconds']} s)", flush=True)
            if args.docs and seed == args.seeds[0]:
                path = Path(args.docs) / f"demo_{name}.png"
                if path.exists():
                    path.unlink()
                write_contact_sheet(path, frames, cfg.pipe.num_frames)
        out["runs"][name] = {"per_seed": runs, "pooled": pooled(runs)}
    vi, ind = out["runs"]["video_infinity"]["pooled"], out["runs"]["independent"]["pooled"]
    out["summary"] = {"vi": vi, "independent": ind,
                      "centroid_improvement": ind["centroid_ratio"] / vi["centroid_ratio"],
                      "general_improvement": ind["general_median"] / vi["general_median"]}
    for name, p in (("Video-Infinity", vi), ("independent", ind)):
        print(f"{name:15s} pooled: centroid seam ratio {p['centroid_ratio']:.2f}, general seam median "
              f"{p['general_median']:.2f}, found {p['found']:.3f}, colour {p['color']:.3f}, direction {p['direction']:.3f}")
    print(f"independent / Video-Infinity: centroid {out['summary']['centroid_improvement']:.1f}x, "
          f"general {out['summary']['general_improvement']:.1f}x")
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
