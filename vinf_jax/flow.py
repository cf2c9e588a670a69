"""One generation, for every front end: config -> devices -> pipeline -> denoise -> streamed mp4,
sidecar, seams and contact sheet (the finished latents kept if decoding runs out of device memory).

The terminal (``vinf_jax.generate``) and the web app (``vinf_jax.app``) both call :func:`generate`
and differ only in their :class:`Observer`: what they show while it runs. The app passes the same
:class:`Pipelines` to every run, so a second run of the same shapes compiles nothing. Every process
of a multi-host job runs this; only process 0 writes files and hears the observer.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from vinf_jax.config import GenerateConfig, to_dict
from vinf_jax.errors import ConfigError, DiskFullError, OutOfMemoryError, is_disk_full, is_out_of_memory


class Observer:
    """What a front end hears of a run, on process 0; every method does nothing here."""

    def status(self, message: str) -> None:
        """A stage begins or something happened ("devices: ...", "loading ...")."""

    def denoise_started(self, steps: int) -> None:
        """Denoising begins (the first step includes compiling or loading the program)."""

    def denoise_step(self, step: int) -> None:
        """Step ``step`` (0-based) has finished on the devices."""

    def decode_started(self, frames: int) -> None:
        """Denoising is over; ``frames`` frames will be decoded and written."""

    def frames_written(self, count: int) -> None:
        """``count`` more frames reached the mp4."""


@dataclasses.dataclass
class GenerationResult:
    path: Path | None           # the mp4 (None on processes other than 0)
    contact_sheet: Path | None  # the PNG beside it
    frames: int
    width: int
    height: int
    devices: int
    seams: dict                 # seams.seam_scores of the video
    summary: dict               # timings and compile-cache counts, as in the sidecar's "timings"

    @property
    def sidecar(self) -> Path | None:
        return None if self.path is None else self.path.with_suffix(".json")

    def describe(self) -> str:
        """``64 frames 64x64; 8 device(s); first step 0.4 s (compile ..., compile cache: ...), ...``"""
        s, cache = self.summary, self.summary["compile_cache"]
        note = f"compile cache: {cache['hits']} hit(s), {cache['misses']} miss(es)" if cache["dir"] else "compile cache off"
        return (f"{self.frames} frames {self.width}x{self.height}; {self.devices} device(s); first step "
                f"{s['first_step_s']:.1f} s (compile {s['compile_s']:.1f} s, {note}), denoise {s['denoise_s']:.1f} s, "
                f"decode+write {s['decode_write_s']:.1f} s, {s['frames_per_s']:.2f} frames/s")


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


class Pipelines:
    """The loaded pipeline of the last device set, kept between runs: a second run on the same
    devices reuses its parameters on the devices and its compiled programs. Another device set (or
    model, dtype) replaces it, so device memory holds one copy of the model."""

    def __init__(self):
        self._key, self._pipe = None, None

    def get(self, model: str, devices, dtype, observer: Observer):
        """(pipeline, seconds spent loading it: 0 when reused)."""
        key = (str(model), tuple(devices), str(dtype))
        if key == self._key:
            return self._pipe, 0.0
        from vinf_jax.pipeline import VideoInfinityPipeline

        self._key, self._pipe = None, None  # the old one's device memory goes before the new one loads
        t0 = time.perf_counter()
        observer.status(f"loading {model} ...")
        self._pipe = VideoInfinityPipeline.from_pretrained(model, devices=list(devices), dtype=dtype)
        self._key = key
        return self._pipe, time.perf_counter() - t0


def generate(cfg: GenerateConfig, observer: Observer | None = None, *, pipelines: Pipelines | None = None,
             latents_file: str | None = None) -> GenerationResult:
    """Run ``cfg`` and write its files (process 0); ``latents_file``: decode latents an earlier run
    kept instead of denoising. Raises a ``VinfError`` (nothing written) for what the user can fix:
    bad input, out of device memory (the latents kept, named in the message), a full disk."""
    from vinf_jax.output import video_io

    jax = start_jax(cfg)
    import numpy as np

    from vinf_jax.compile_cache import CompileStats

    devices, devices_why = select_devices(jax, cfg)
    pipe_cfg = cfg.pipe
    writer = jax.process_index() == 0
    observer = observer if observer is not None and writer else Observer()
    n = cfg.video_infinity.num_clips or len(devices)
    total = n * pipe_cfg.num_frames
    video_io.output_stem(cfg.base_path, pipe_cfg.file_name, total, pipe_cfg.steps, pipe_cfg.fps)  # refuses a taken file_name now
    # the index is claimed when the files are published (another run may take one meanwhile)
    name = (video_io.OutputName.explicit(Path(cfg.base_path) / pipe_cfg.file_name) if pipe_cfg.file_name
            else video_io.OutputName.indexed(cfg.base_path, total, pipe_cfg.steps, pipe_cfg.fps))

    observer.status(f"devices: {devices_why}")
    if writer:
        stale = video_io.sweep_stale_temps(Path(cfg.base_path))
        if stale:
            observer.status(f"removed {len(stale)} temporary file(s) of killed runs from {cfg.base_path}")
    stats = CompileStats()
    pipe, t_load = (pipelines or Pipelines()).get(cfg.model, devices, cfg.dtype, observer)
    observer.status("compiling the denoising loop (or loading it from the compilation cache) ...")
    observer.denoise_started(pipe_cfg.steps)
    marks = {}

    def progress(step):
        marks.setdefault("first", time.perf_counter())
        observer.denoise_step(step)

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
    observer.decode_started(frames)
    first_step_s = marks.get("first", t2) - t1  # compile (or cache load) + the first step
    denoise_s = t2 - t1
    summary = {"load_s": round(t_load, 3), "first_step_s": round(first_step_s, 3),
               "compile_s": compiled["compile_s"],  # compiling, or reading programs from the cache
               "compile_cache": {"dir": pipe.compile_cache_dir, "hits": compiled["cache_hits"],
                                 "misses": compiled["cache_misses"]},
               "denoise_s": round(denoise_s, 3), "frames": frames}

    from vinf_jax.output.contact_sheet import write_contact_sheet
    from vinf_jax.output.seams import SeamAccumulator, jsonable

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
    res = None
    try:
        try:
            res = pipe.export_video(latents, name, pipe_cfg.export_fps, save_frames=cfg.save_frames, sidecar=sidecar,
                                    progress=observer.frames_written, observe=seams.update)
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
        summary.setdefault("decode_write_s", round(res.seconds, 3))
        sheet_path = None
        if writer:
            sheet, idx = seams.sheet_video()
            sheet_path = res.path.with_suffix(".png")
            write_contact_sheet(sheet_path, sheet, pipe_cfg.num_frames, indices=idx)
    except Exception as e:
        if not is_disk_full(e):
            raise
        done = "; nothing was written" if res is None else \
            f" ({res.path} and its sidecar are complete; the contact sheet is not)"
        raise DiskFullError(f"no space left on the device holding {name.folder} while writing the video{done}: "
                            "free some space there or set base_path to another folder") from None
    return GenerationResult(res.path, sheet_path, frames, pipe_cfg.width, pipe_cfg.height, len(devices),
                            seams.scores(), summary)
