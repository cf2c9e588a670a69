"""python -m vinf_jax.generate --config FILE [--set key.path=value ...]

Reads an original Video-Infinity JSON config (plus vinf_jax keys), generates the long video as one
SPMD program over the device mesh, and writes ``base_path/<index>_<frames>_<steps>_<fps>.mp4`` and
its JSON sidecar (only process 0 writes). Bad input: one ``error:`` line, exit status 2, no file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

from vinf_jax.config import GenerateConfig, load_config, to_dict
from vinf_jax.errors import VinfError, VinfWarning


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m vinf_jax.generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="JSON config (original Video-Infinity format)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set pipe_configs.steps=10 (repeatable)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def requested_devices(cfg: GenerateConfig) -> int | None:
    d = cfg.devices
    return len(d) if isinstance(d, tuple) else d


def start_jax(cfg: GenerateConfig):
    """Import jax with enough virtual CPU devices for the config, join the multi-host job if any."""
    want = requested_devices(cfg) or cfg.video_infinity.num_clips
    dist = cfg.distributed
    nproc = dist.num_processes or 1
    if want and "jax" not in sys.modules:
        # On a machine without accelerators a config asking for D devices runs on D virtual CPU
        # devices (per process: D / processes). Accelerator backends ignore this.
        os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(max(1, want // nproc)))
    import jax

    if dist.coordinator_address:
        from vinf_jax.parallel.mesh import initialize_distributed

        initialize_distributed(dist.coordinator_address, nproc, dist.process_id or 0)
    return jax


def select_devices(jax, cfg: GenerateConfig):
    """(devices of the clip axis, why that many)."""
    from vinf_jax.parallel.devices import plan_devices

    devices = jax.devices()
    plan = plan_devices(cfg.devices, cfg.video_infinity.num_clips, len(devices))
    if isinstance(cfg.devices, tuple) and jax.process_count() == 1 and devices[0].platform != "cpu":
        by_id = {dev.id: dev for dev in devices}
        return [by_id[i] for i in cfg.devices], plan.reason
    return devices[: plan.count], plan.reason


def run(cfg: GenerateConfig, quiet: bool = False) -> dict:
    from vinf_jax import video_io

    jax = start_jax(cfg)
    import numpy as np

    from vinf_jax.compile_cache import CompileStats
    from vinf_jax.pipeline import VideoInfinityPipeline

    devices, devices_why = select_devices(jax, cfg)
    pipe_cfg = cfg.pipe
    writer = jax.process_index() == 0
    n = cfg.video_infinity.num_clips or len(devices)
    total = n * pipe_cfg.num_frames
    stem = video_io.output_stem(cfg.base_path, pipe_cfg.file_name, total, pipe_cfg.steps, pipe_cfg.fps)

    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if writer and not quiet else (lambda msg: None)
    say(f"devices: {devices_why}")
    stats = CompileStats()
    t0 = time.perf_counter()
    say(f"loading {cfg.model} ...")
    pipe = VideoInfinityPipeline.from_pretrained(cfg.model, devices=devices, dtype=cfg.dtype)
    t_load = time.perf_counter() - t0
    say("compiling the denoising loop (or loading it from the compilation cache) ...")
    bar = None
    if writer and not quiet:
        from tqdm import tqdm

        bar = tqdm(total=pipe_cfg.steps, desc="denoise", unit="step", file=sys.stderr)
    marks = {}

    def progress(step):
        marks.setdefault("first", time.perf_counter())
        if bar is not None:
            bar.update(1)

    t1 = time.perf_counter()
    latents = pipe(list(pipe_cfg.prompts), num_frames=pipe_cfg.num_frames, num_clips=n, steps=pipe_cfg.steps,
                   guidance_scale=pipe_cfg.guidance_scale, fps=pipe_cfg.fps, height=pipe_cfg.height,
                   width=pipe_cfg.width, seed=cfg.seed, negative_prompt=pipe_cfg.negative_prompt,
                   scheduler=pipe_cfg.scheduler, vi_config=cfg.video_infinity.with_num_clips(n),
                   output_type="latent", progress=progress)
    t2 = time.perf_counter()
    compiled = stats.snapshot()  # everything compiled (or read from the cache) up to the loop's end
    if bar is not None:
        bar.close()
        from tqdm import tqdm

        bar = tqdm(total=latents.shape[2], desc="decode", unit="frame", file=sys.stderr)
    frames = pipe.decode(latents)
    t3 = time.perf_counter()
    if bar is not None:
        bar.update(frames.shape[0])
        bar.close()
    first_step_s = marks.get("first", t2) - t1  # compile (or cache load) + the first step
    denoise_s = t2 - t1
    summary = {"load_s": round(t_load, 3), "first_step_s": round(first_step_s, 3),
               "compile_s": compiled["compile_s"],  # compiling, or reading programs from the cache
               "compile_cache": {"dir": pipe.compile_cache_dir, "hits": compiled["cache_hits"],
                                 "misses": compiled["cache_misses"]},
               "denoise_s": round(denoise_s, 3), "decode_s": round(t3 - t2, 3), "frames": int(frames.shape[0]),
               "frames_per_s": round(frames.shape[0] / max(denoise_s + (t3 - t2), 1e-9), 3)}
    cache = compiled["cache_hits"]
    cache_note = (f"compile cache: {cache} hit(s), {compiled['cache_misses']} miss(es)" if pipe.compile_cache_dir
                  else "compile cache off")
    if writer:
        from importlib.metadata import version

        sidecar = {"config": to_dict(cfg), "resolved": {"num_clips": n, "devices": [str(d) for d in devices],
                                                         "devices_why": devices_why,
                                                         "processes": jax.process_count(),
                                                         "dtype": str(np.dtype(pipe.dtype)),
                                                         "scheduler": pipe.scheduler_used,
                                                         "fps_conditioning": pipe.unet.config.fps_cond},
                   "versions": {p: version(p) for p in ("vinf-jax", "jax", "flax")}, "timings": summary}
        if cfg.save_frames == "npy":
            video_io.write_npy(stem.with_suffix(".npy"), frames)
        video_io.write_json(stem.with_suffix(".json"), sidecar)
        video_io.write_mp4(stem.with_suffix(".mp4"), frames, pipe_cfg.export_fps)
        print(f"wrote {stem.with_suffix('.mp4')}  ({frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]}; "
              f"{len(devices)} device(s); first step {first_step_s:.1f} s (compile {compiled['compile_s']:.1f} s, "
              f"{cache_note}), denoise {denoise_s:.1f} s, decode {t3 - t2:.1f} s, "
              f"{summary['frames_per_s']:.2f} frames/s)")
    return summary


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Our warnings as one readable line (no source line echoed); others as Python prints them."""
    if issubclass(category, VinfWarning):
        print(f"warning: {message}", file=file or sys.stderr, flush=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def main(argv=None) -> int:
    args = _parse(argv)
    warnings.showwarning = _show_warning
    try:
        cfg = load_config(args.config, args.set)
        run(cfg, quiet=args.quiet)
    except VinfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Output files only ever exist under temporary names, removed on the way out (video_io).
        # Exit now: a compiled loop may still be running on the devices, and waiting for it at
        # interpreter shutdown would make Ctrl-C take as long as the generation.
        print("interrupted: no output written", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
    finally:
        warnings.showwarning = _python_showwarning
    return 0


if __name__ == "__main__":
    sys.exit(main())
