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
from pathlib import Path

from vinf_jax.config import GenerateConfig, load_config, to_dict
from vinf_jax.errors import ConfigError, OutOfMemoryError, VinfError, VinfWarning, is_out_of_memory


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m vinf_jax.generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="JSON config (original Video-Infinity format)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set pipe_configs.steps=10 (repeatable)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--latents", metavar="FILE.latents.npy",
                    help="decode latents an earlier run of the same config kept (it ran out of device memory "
                         "while decoding) instead of denoising again")
    return ap.parse_args(argv)


def requested_devices(cfg: GenerateConfig) -> int | None:
    d = cfg.devices
    return len(d) if isinstance(d, tuple) else d


def start_jax(cfg: GenerateConfig):
    """Import jax with enough virtual CPU devices for the config, join the multi-host job if any
    (given by the config, JAX_* variables, or the srun / mpirun environment: ``launchers``)."""
    from vinf_jax.launchers import detect_job

    job = detect_job(cfg.distributed)
    want = requested_devices(cfg) or cfg.video_infinity.num_clips
    if want and "jax" not in sys.modules:
        # On a machine without accelerators a config asking for D devices runs on D virtual CPU
        # devices (per process: D / processes). Accelerator backends ignore this.
        os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(max(1, want // job.num_processes)))
    import jax

    if job.multi_process:
        from vinf_jax.parallel.mesh import initialize_distributed

        initialize_distributed(job.coordinator_address, job.num_processes, job.process_id, launcher=job.launcher)
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


def read_latents(path: str | Path, want: tuple[int, ...]):
    """Latents kept by an earlier run (``video_io.keep_latents``): float32 of shape ``want``; no pickles."""
    import numpy as np

    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"--latents: {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"--latents: {path} is not a numpy .npy array of numbers ({e})") from None
    if x.shape != want or x.dtype != np.float32:
        raise ConfigError(f"--latents: {path} holds {x.dtype} {x.shape}; this config makes float32 {want} "
                          "(1, latent channels, num_clips*num_frames, height and width over the VAE's factor): use the "
                          "config that made them")
    return x


def run(cfg: GenerateConfig, quiet: bool = False, latents_file: str | None = None) -> dict:
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
    video_io.output_stem(cfg.base_path, pipe_cfg.file_name, total, pipe_cfg.steps, pipe_cfg.fps)  # refuses a taken file_name now
    # the index is claimed when the files are published (another run may take one meanwhile)
    name = (video_io.OutputName.explicit(Path(cfg.base_path) / pipe_cfg.file_name) if pipe_cfg.file_name
            else video_io.OutputName.indexed(cfg.base_path, total, pipe_cfg.steps, pipe_cfg.fps))

    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if writer and not quiet else (lambda msg: None)
    say(f"devices: {devices_why}")
    if writer:
        stale = video_io.sweep_stale_temps(Path(cfg.base_path))
        if stale:
            say(f"removed {len(stale)} temporary file(s) of killed runs from {cfg.base_path}")
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
    if latents_file is None:
        latents = pipe(list(pipe_cfg.prompts), num_frames=pipe_cfg.num_frames, num_clips=n, steps=pipe_cfg.steps,
                       guidance_scale=pipe_cfg.guidance_scale, fps=pipe_cfg.fps, height=pipe_cfg.height,
                       width=pipe_cfg.width, seed=cfg.seed, negative_prompt=pipe_cfg.negative_prompt,
                       scheduler=pipe_cfg.scheduler, vi_config=cfg.video_infinity.with_num_clips(n),
                       output_type="latent", progress=progress, lcm_origin_steps=pipe_cfg.lcm_origin_steps,
                       motion_gs=pipe_cfg.motion_gs, motion_percentage=pipe_cfg.motion_percentage)
        sampled = pipe.scheduler_used
    else:  # an earlier run denoised these; only the decode is left
        s = pipe.vae_scale_factor
        latents = read_latents(latents_file, (1, pipe.vae.config.latent_channels, total, pipe_cfg.height // s,
                                              pipe_cfg.width // s))
        sampled = {"decoded_from": str(latents_file)}
    t2 = time.perf_counter()
    compiled = stats.snapshot()  # everything compiled (or read from the cache) up to the loop's end
    frames = int(latents.shape[2])
    if bar is not None:
        bar.close()
        from tqdm import tqdm

        bar = tqdm(total=frames, desc="decode+write", unit="frame", file=sys.stderr)
    first_step_s = marks.get("first", t2) - t1  # compile (or cache load) + the first step
    denoise_s = t2 - t1
    summary = {"load_s": round(t_load, 3), "first_step_s": round(first_step_s, 3),
               "compile_s": compiled["compile_s"],  # compiling, or reading programs from the cache
               "compile_cache": {"dir": pipe.compile_cache_dir, "hits": compiled["cache_hits"],
                                 "misses": compiled["cache_misses"]},
               "denoise_s": round(denoise_s, 3), "frames": frames}
    cache_note = (f"compile cache: {compiled['cache_hits']} hit(s), {compiled['cache_misses']} miss(es)"
                  if pipe.compile_cache_dir else "compile cache off")

    from vinf_jax.contact_sheet import write_contact_sheet
    from vinf_jax.seams import SeamAccumulator, jsonable, summary_line

    def sidecar(res):  # written with the mp4, once every frame is out (decode and write overlap)
        from importlib.metadata import version

        summary.update(decode_write_s=round(res.seconds, 3),
                       frames_per_s=round(frames / max(denoise_s + res.seconds, 1e-9), 3))
        return {"config": to_dict(cfg), "resolved": {"num_clips": n, "devices": [str(d) for d in devices],
                                                     "devices_why": devices_why,
                                                     "processes": jax.process_count(),
                                                     "dtype": str(np.dtype(pipe.dtype)),
                                                     "scheduler": sampled,
                                                     "fps_conditioning": pipe.unet.config.fps_cond},
                "versions": {p: version(p) for p in ("vinf-jax", "jax", "flax")}, "timings": summary,
                "seams": jsonable(seams.scores())}

    # every process takes part (each chunk is one collective program); only process 0 writes
    seams = SeamAccumulator(frames, pipe_cfg.num_frames)  # one decoded frame per latent frame
    try:
        res = pipe.export_video(latents, name, pipe_cfg.export_fps, save_frames=cfg.save_frames, sidecar=sidecar,
                                progress=bar.update if bar is not None else None, observe=seams.update)
    except Exception as e:  # the denoised latents are a finished result: keep them
        if not is_out_of_memory(e):
            raise
        if latents_file is not None:  # already on disk: point to it, no second copy
            kept = latents_file
        else:
            from vinf_jax.pipeline import gather_to_host

            host = gather_to_host(latents)  # every process takes part; process 0 writes
            kept = video_io.keep_latents(name, host) if writer else None
        raise OutOfMemoryError(
            f"out of device memory while decoding {frames} frames of {pipe_cfg.width}x{pipe_cfg.height} "
            f"({np.dtype(pipe.dtype).name}, {len(devices)} device(s)), even one frame per device at a time; the "
            f"denoised latents are kept in {kept}: decode them in a fresh run with the same config and "
            f"--latents {kept}") from None
    if bar is not None:
        bar.close()
    summary.setdefault("decode_write_s", round(res.seconds, 3))
    if writer:
        h, w = pipe_cfg.height, pipe_cfg.width
        print(f"wrote {res.path}  ({frames} frames {w}x{h}; {len(devices)} device(s); first step {first_step_s:.1f} s "
              f"(compile {compiled['compile_s']:.1f} s, {cache_note}), denoise {denoise_s:.1f} s, "
              f"decode+write {res.seconds:.1f} s, {summary['frames_per_s']:.2f} frames/s)")
        sheet, idx = seams.sheet_video()
        write_contact_sheet(res.path.with_suffix(".png"), sheet, pipe_cfg.num_frames, indices=idx)
        print(f"{summary_line(seams.scores())}; contact sheet {res.path.with_suffix('.png')}")
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
        run(cfg, quiet=args.quiet, latents_file=args.latents)
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
