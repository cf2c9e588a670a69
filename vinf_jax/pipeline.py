"""VideoInfinityPipeline: prompts -> long video, and the jitted pieces for users' own samplers.

Latents in and out use diffusers' layout (batch, channels, frames, height, width); frames come back
as (T, height, width, 3) float32 in [0, 1]. Inside, everything is channels-last and the frame axis
is sharded over the mesh axis "clips" (see ``parallel/``).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from vinf_jax.config import DEFAULT_DTYPE, VideoInfinityConfig, compute_dtype
from vinf_jax.config.video_infinity import clip_prompt_index
from vinf_jax import compile_cache
from vinf_jax.errors import ConfigError, NonFiniteError, OutOfMemoryError, VinfWarning, is_out_of_memory
from vinf_jax.loading import Model, check_turbo_inputs
from vinf_jax.models.clip_text import tokenize
from vinf_jax.parallel.apply import LATENT_SPEC, sharded_unet
from vinf_jax.parallel.mesh import clip_mesh, clip_sharding, replicated
from vinf_jax.sampling.loop import DenoiseLoop
from vinf_jax.sampling import turbo
from vinf_jax.sampling.auto import describe, resolve, warn_notes
from vinf_jax.sampling.schedulers import SchedulerSpec, make_solver


def put_global(x, sharding):
    """Place a host array (identical on every process) with ``sharding``; works across hosts."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def gather_to_host(x: jax.Array) -> np.ndarray:
    """The full array on every process (one collective across hosts; free on a single process)."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def wait_interruptibly(x: jax.Array, poll_s: float = 0.05) -> None:
    """Wait for ``x`` in short sleeps, so Ctrl-C reaches Python during a long compiled loop
    (``block_until_ready`` would hold the main thread in C++ until the loop ends)."""
    while not x.is_ready():
        time.sleep(poll_s)


# layout changes of latents that stay on the devices (jitted once, at module level)
_channels_first = jax.jit(lambda a: jnp.transpose(a, (0, 4, 1, 2, 3)))
_channels_last = jax.jit(lambda a: jnp.transpose(a.astype(jnp.float32), (0, 2, 3, 4, 1)))


def _non_finite_message(step: int, steps: int, dtype) -> str:
    """What went wrong and what to try: float16's range ends at 65504, bfloat16 has float32's range."""
    where = f"NaN or inf appeared in the latents at denoising step {step} of {steps}, computing in {jnp.dtype(dtype).name}"
    if jnp.dtype(dtype) == jnp.float16:
        return where + ('; float16 overflows where bfloat16 does not: try "dtype": "bfloat16" '
                        '(or "float32"), or check the weights')
    return where + " (check the weights and dtype)"


class VideoInfinityPipeline:
    """Text-to-long-video with Video-Infinity on VideoCrafter2, one SPMD program over a device mesh."""

    def __init__(self, unet: Model, text_encoder: Model, vae: Model, tokenizer, scheduler_config: dict,
                 *, devices=None, dtype=DEFAULT_DTYPE):
        self.compile_cache_dir = compile_cache.enable()
        self.mesh: Mesh = clip_mesh(devices)
        self.dtype = jnp.dtype(compute_dtype(dtype, self.platform))
        self.unet, self.text_encoder, self.vae = unet, text_encoder, vae
        self.tokenizer, self.scheduler_config = tokenizer, dict(scheduler_config)
        self.load_params(unet.params, text_encoder.params, vae.params)
        # Jitted functions hold models, never the pipeline: JAX's caches keep
        # what a compiled program references, and a deleted pipeline must free its device arrays.
        self._encode = jax.jit(text_encoder.apply)
        self._loops: dict = {}
        self._predict: dict = {}
        self.scheduler_used: dict | None = None  # what the last call sampled with (for the sidecar)
        self._warned_fps = False

    def load_params(self, unet: dict | None = None, text_encoder: dict | None = None, vae: dict | None = None):
        """Put new weights of the same shapes on the devices (e.g. a model while it trains); the
        compiled programs stay valid, since they take the weights as arguments."""
        rep = replicated(self.mesh)
        cast = lambda tree: _cast_params(tree, lambda a: put_global(np.asarray(a, np.float32), rep), self.dtype)
        if unet is not None:
            self._unet_params = cast(unet)
        if vae is not None:
            self._vae_params = cast(vae)
        if text_encoder is not None:  # float32: tiny cost, exact prompts
            self._text_params = jax.tree.map(jnp.asarray, text_encoder)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path, devices=None, dtype=DEFAULT_DTYPE) -> "VideoInfinityPipeline":
        """From a converted checkpoint folder, ``"tiny-random"`` (a small random model, no download) or
        ``"tiny-demo"`` (the small model trained on the demo world, shipped in the package).
        ``dtype``: the config's names or a numpy/jax dtype (``vinf_jax.config.dtypes``)."""
        from vinf_jax.named_models import load_model

        pipe = cls.from_checkpoint(load_model(checkpoint_dir), devices=devices, dtype=dtype)
        pipe._warn_if_large_on_cpu()
        return pipe

    @classmethod
    def from_checkpoint(cls, ck, devices=None, dtype=DEFAULT_DTYPE) -> "VideoInfinityPipeline":
        """From a ``loading.LoadedCheckpoint`` already in host memory (the app builds one pipeline per
        device set from one load)."""
        missing = [c for c in ("text_encoder", "vae", "tokenizer", "scheduler_config") if getattr(ck, c) is None]
        if missing:
            raise ConfigError(f"model: checkpoint {ck.path} lacks {', '.join(missing)} (convert it with --base)")
        return cls(ck.unet, ck.text_encoder, ck.vae, ck.tokenizer, ck.scheduler_config, devices=devices, dtype=dtype)

    @classmethod
    def tiny_random(cls, seed: int = 0, devices=None, dtype=DEFAULT_DTYPE) -> "VideoInfinityPipeline":
        """A small random model of the real architecture (``vinf_jax.tiny``), built in process."""
        from vinf_jax.named_models import tiny_random

        return cls.from_checkpoint(tiny_random(seed), devices=devices, dtype=dtype)

    def _warn_if_large_on_cpu(self, threshold: int = 100_000_000):
        if self.platform != "cpu":
            return
        n = sum(int(np.size(a)) for a in jax.tree.leaves(self.unet.params))
        if n >= threshold:
            warnings.warn(f"running a {n / 1e9:.2f} B-parameter UNet on the CPU: JAX sees no GPU. For NVIDIA GPUs "
                          "install the GPU build: pip install -e '.[cuda12]' (or pip install -U 'jax[cuda12]')",
                          VinfWarning, stacklevel=3)

    @property
    def platform(self) -> str:
        return self.mesh.devices.flat[0].platform

    # -- pieces ----------------------------------------------------------------------------------
    @property
    def num_devices(self) -> int:
        return self.mesh.size

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode_prompt(self, prompts: str | Sequence[str]) -> np.ndarray:
        """Prompt embeddings (len(prompts), 77, D) float32, as the pipeline's text encoder makes them."""
        return np.asarray(self._encode(self._text_params, jnp.asarray(tokenize(self.tokenizer, prompts))))

    def predict_noise(self, latents, timestep, prompt_embeds, fps=24, vi_config: VideoInfinityConfig | None = None,
                      guidance=None, motion=None):
        """One clip-parallel noise prediction for a whole video (no classifier-free guidance).

        latents (B, C, T, h, w) in diffusers' layout; prompt_embeds (B, N, L, D) per clip, or
        (N, L, D) / (L, D) broadcast; N = vi_config.num_clips or the number of devices. ``guidance`` /
        ``motion``: T2V-Turbo's embedded scales (scalars or (B,)), as ``load_unet``'s.
        """
        check_turbo_inputs(self.unet.config, guidance, motion)
        latents = np.asarray(latents, np.float32)
        b, _, t = latents.shape[:3]
        vi = vi_config or VideoInfinityConfig()
        n = vi.num_clips or self.num_devices
        self._check_clips(n, t)
        emb = np.asarray(prompt_embeds, np.float32)
        emb = np.broadcast_to(emb.reshape((1,) * (4 - emb.ndim) + emb.shape), (b, n) + emb.shape[-2:])
        key = (vi, n, guidance is not None, motion is not None)
        if key not in self._predict:
            self._predict[key] = jax.jit(sharded_unet(self.unet, vi, n, self.mesh, guidance=key[2], motion=key[3]))
        x = put_global(np.transpose(latents, (0, 2, 3, 4, 1)), clip_sharding(self.mesh, 5, 1))
        ctx = put_global(emb, clip_sharding(self.mesh, 4, 1))
        scales = [jnp.broadcast_to(jnp.asarray(v, jnp.float32), (b,)) for v in (guidance, motion) if v is not None]
        out = self._predict[key](self._unet_params, x, jnp.float32(timestep), ctx.astype(self.dtype),
                                 jnp.full((b,), fps, jnp.float32), *scales)
        return np.transpose(gather_to_host(out.astype(jnp.float32)), (0, 4, 1, 2, 3))

    def decode(self, latents, chunk: int = 8) -> np.ndarray:
        """Latents (1, C, T, h, w) -> frames (T, 8h, 8w, 3) float32 in [0, 1] on every process; each
        device decodes its own frames, ``chunk`` at a time, and the frames are gathered once. The
        whole video passes through host memory: for long videos use :meth:`export_video`."""
        from vinf_jax.output.export import frames_first

        x = frames_first(self, latents)  # (T, h, w, C)
        if x.shape[0] % self.num_devices:
            raise ConfigError(f"decode: {x.shape[0]} frames do not split over {self.num_devices} devices")
        sharded = (jax.device_put(x, clip_sharding(self.mesh, 4, 0)) if isinstance(x, jax.Array)
                   else put_global(x, clip_sharding(self.mesh, 4, 0)))
        return gather_to_host(self._decode_fn(chunk)(self._vae_params, sharded))

    def export_video(self, latents, path, fps: float = 8, *, save_frames: str | None = None, sidecar=None,
                     chunk: int = 8, progress: Callable[[int], None] | None = None, observe=None):
        """Decode ``latents`` on the mesh and stream the mp4 to ``path`` atomically; returns an
        ``export.ExportResult`` (its ``path`` is the mp4 written, on process 0).

        ``latents``: the device array ``__call__(..., output_type="latent")`` returns, or numpy
        (1, C, T, h, w). Each device decodes ``chunk`` frames at a time, converts them to uint8
        and only process 0 receives them; the next chunk decodes while the host encodes this one,
        so host memory stays a few chunks whatever T is. ``save_frames="npy"`` also writes the
        float32 frames (T, H, W, 3); ``sidecar`` (a dict, or a function of the result) is written
        as JSON beside the mp4; ``progress(n)`` is called as each chunk of n frames is written.
        Every process of a multi-host job must call it (only process 0 writes). Files appear only
        when complete; if ``path`` is taken by then, ``<stem>_1.mp4``... is used. If the devices run
        out of memory on the first chunk, ``chunk`` is halved and the export starts again (a warning).
        """
        from vinf_jax.output.export import export_video

        return export_video(self, latents, path, fps, save_frames=save_frames, sidecar=sidecar, chunk=chunk,
                            progress=progress, observe=observe)

    def _chunk_program(self, plan, raw: bool):
        """The compiled decode of one chunk of frames (``parallel.stream.chunk_program``): uint8
        frames, plus their float32 values with ``raw``; the same arithmetic as :meth:`decode`."""
        from vinf_jax.output.export import device_uint8
        from vinf_jax.parallel.stream import chunk_program

        key = ("chunk", plan, raw)
        if key not in self._loops:
            model, dtype = self.vae, self.dtype  # the closure must not hold the pipeline

            def frames(params, z):
                y = model.module(params).decode(z.astype(dtype)).astype(jnp.float32)
                y = jnp.clip(y / 2 + 0.5, 0.0, 1.0)
                return (device_uint8(y), y) if raw else (device_uint8(y),)

            self._loops[key] = chunk_program(self.mesh, plan, frames)
        return self._loops[key]

    def _decode_fn(self, chunk: int):
        key = ("decode", chunk)
        if key not in self._loops:
            model = self.vae  # the closure must not hold the pipeline

            def local(params, z):
                vae = model.module(params)
                n = z.shape[0]
                c = math.gcd(n, chunk)
                # float32 in: decode divides by the scaling factor in float32, then computes in the params' dtype
                imgs = jax.lax.map(vae.decode, z.reshape((n // c, c) + z.shape[1:]).astype(jnp.float32))
                imgs = imgs.reshape((n,) + imgs.shape[2:]).astype(jnp.float32)
                return jnp.clip(imgs / 2 + 0.5, 0.0, 1.0)

            self._loops[key] = jax.jit(jax.shard_map(local, mesh=self.mesh, in_specs=(P(), P(LATENT_SPEC[1])),
                                                     out_specs=P(LATENT_SPEC[1])))
        return self._loops[key]

    def _check_clips(self, n: int, frames: int):
        if n % self.num_devices:
            raise ConfigError(f"num_clips={n} is not a multiple of the {self.num_devices} devices")
        if frames % n:
            raise ConfigError(f"{frames} latent frames do not split into num_clips={n} clips")

    # -- the whole video -------------------------------------------------------------------------
    def resolve_scheduler(self, scheduler: str | SchedulerSpec = "auto") -> tuple[SchedulerSpec, dict]:
        """(sampler, scheduler config to build it from) for a name, "auto" (the sampler of this model's own
        code, ``sampling/auto.py``) or a spec; what "auto" cannot honour is one warning."""
        if isinstance(scheduler, SchedulerSpec):
            return scheduler, self.scheduler_config
        spec, sched_cfg, notes = resolve(scheduler, self.scheduler_config, self.unet.config)
        warn_notes(notes, stacklevel=4)
        return spec, sched_cfg

    def __call__(self, prompts: str | Sequence[str], num_frames: int = 24, num_clips: int | None = None,
                 steps: int = 30, guidance_scale: float = 12.0, fps: float | None = None, height: int = 320,
                 width: int = 512, seed: int = 123, latents=None, negative_prompt: str = "",
                 scheduler: str | SchedulerSpec = "auto", vi_config: VideoInfinityConfig | None = None,
                 output_type: str = "np", progress: Callable[[int], None] | None = None,
                 lcm_origin_steps: int | None = None, motion_gs: float | None = None,
                 motion_percentage: float | None = None):
        """Generate ``num_clips`` clips of ``num_frames`` frames; returns frames (T, height, width, 3)
        in [0, 1] (numpy), or with ``output_type="latent"`` latents (1, C, T, h, w) as a device array
        sharded over the frames (``np.asarray`` copies it to the host; :meth:`export_video` writes it).

        T2V-Turbo checkpoints (sampler ``t2v-turbo``, the ``auto`` choice for them): one UNet pass per
        step with ``guidance_scale`` embedded; ``lcm_origin_steps``, ``motion_gs`` and ``motion_percentage``
        default to the checkpoint kind's values (docs/method.md §12)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ConfigError("prompts: at least one prompt is needed")
        if output_type not in ("np", "latent"):
            raise ConfigError(f"output_type={output_type!r}: allowed 'np' or 'latent'")
        vi = vi_config or VideoInfinityConfig()
        n = num_clips or vi.num_clips or self.num_devices
        vi = vi.with_num_clips(n)
        vi.check_num_frames(num_frames)
        self._check_clips(n, n * num_frames)
        s = self.vae_scale_factor
        if height % s or width % s:
            raise ConfigError(f"height/width ({height}x{width}) must be multiples of {s}")
        h, w = height // s, width // s
        spec, sched_cfg = self.resolve_scheduler(scheduler)
        spec, motion = turbo.resolve(spec, sched_cfg, self.unet.config, lcm_origin_steps=lcm_origin_steps,
                                     motion_gs=motion_gs, motion_percentage=motion_percentage,
                                     negative_prompt=negative_prompt)
        solver = make_solver(spec, sched_cfg, steps)
        self.scheduler_used = {**describe(spec), "steps_run": solver.num_steps,
                               "timesteps": [int(t) for t in solver.timesteps]}
        if motion is not None:
            self.scheduler_used.update(motion_gs=motion.gs, motion_percentage=motion.percentage)
        fps = self._fps_argument(fps)

        unique = sorted(set(prompts), key=prompts.index)
        emb = self.encode_prompt(unique + [negative_prompt])
        per_clip = [unique.index(prompts[i]) for i in clip_prompt_index(n, len(prompts))]
        cond = put_global(emb[per_clip][None], clip_sharding(self.mesh, 4, 1)).astype(self.dtype)
        uncond = put_global(emb[-1:], replicated(self.mesh)).astype(self.dtype)

        key = ("loop", vi, n, num_frames, (h, w), spec, steps, motion is not None)
        if key not in self._loops:
            loop = DenoiseLoop(self.unet, vi, n, num_frames, (h, w), self.unet.config.in_channels, solver, self.mesh,
                               motion_input=motion is not None)
            self._loops[key] = loop.build()
        run, begin, init_noise = self._loops[key]
        seed_arr = jnp.uint32(seed)
        if latents is None:
            x = init_noise(seed_arr)
        else:
            want = (1, self.unet.config.in_channels, n * num_frames, h, w)
            if np.shape(latents) != want:
                raise ConfigError(f"latents: expected shape {want} (1, C, num_clips*num_frames, height//{s}, "
                                  f"width//{s}), got {np.shape(latents)}")
            x = self._latents_on_mesh(latents)
        # One call runs the whole loop; with a progress callable, the same compiled program runs one
        # step per call and the host reports between calls (a callback inside would keep the
        # program out of JAX's persistent cache).
        n_steps = solver.num_steps  # VideoCrafter's DDIM runs one more than asked for, as it does there
        bounds = [(i, i + 1) for i in range(n_steps)] if progress is not None else [(0, n_steps)]
        motion_arr = jnp.asarray([motion.gs, motion.threshold] if motion else [0.0, 0.0], jnp.float32)
        try:
            carry = begin(x)
            for start, stop in bounds:
                carry = run(self._unet_params, carry, cond, uncond, jnp.float32(guidance_scale), jnp.float32(fps),
                            seed_arr, jnp.int32(start), jnp.int32(stop), motion_arr)
                wait_interruptibly(carry[2])
                if progress is not None:
                    progress(stop - 1)
            x, _, bad = carry
            bad = gather_to_host(bad)
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            raise OutOfMemoryError(self._memory_advice(n, num_frames, height, width, h, w)) from None
        if (bad >= 0).any():
            raise NonFiniteError(_non_finite_message(int(bad[bad >= 0].min()), steps, self.dtype))
        if output_type == "latent":  # stays on the devices (sharded over frames) for export_video
            return _channels_first(x)
        return gather_to_host(self._decode_fn(8)(self._vae_params, x[0]))

    def _latents_on_mesh(self, latents) -> jax.Array:
        """Given latents (1, C, T, h, w) -> (1, T, h, w, C) sharded over frames."""
        sharding = clip_sharding(self.mesh, 5, 1)
        if isinstance(latents, jax.Array) and set(latents.sharding.device_set) <= set(self.mesh.devices.flat):
            return jax.device_put(_channels_last(latents), sharding)
        return put_global(np.transpose(np.asarray(latents, np.float32), (0, 2, 3, 4, 1)), sharding)

    def _memory_advice(self, n: int, f: int, height: int, width: int, h: int, w: int) -> str:
        d = self.num_devices
        per = n // d
        fit = [f"fewer clips per device (num_clips={max(per // 2, 1) * d} on {d} devices)" if per > 1 else None,
               f"more devices (devices={2 * d} for {n} clips)" if n % (2 * d) == 0 else
               "more devices (with num_clips a multiple of them)",
               f"a smaller size (e.g. {height // 2 // 8 * 8}x{width // 2 // 8 * 8})" if min(height, width) >= 128 else None]
        return (f"out of device memory: {per} clip(s) x {f} frames = {per * f} frames per device at {height}x{width} "
                f"(latents {h}x{w}), {np.dtype(self.dtype).name}, on {d} {self.platform} device(s); what would "
                "fit: " + ", ".join(x for x in fit if x))

    def _fps_argument(self, fps):
        """The fps fed to the UNet; a set fps on a UNet without fps conditioning (ModelScope, zeroscope)
        is said once per pipeline and then ignored (the UNet has nothing to feed it to)."""
        if not self.unet.config.fps_cond and fps is not None and not self._warned_fps:
            self._warned_fps = True
            warnings.warn(f"fps={fps}: this checkpoint's UNet has no fps conditioning (ModelScope / zeroscope "
                          "layout); generating without it", VinfWarning, stacklevel=3)
        return 24 if fps is None else fps


def _cast_params(tree, put, dtype):
    """Parameters to the compute dtype, except norms' scale and bias (any dict holding a ``scale``),
    which stay float32: their statistics are float32 and bf16 would round the affine map."""
    if isinstance(tree, dict):
        keep = "scale" in tree and not any(isinstance(v, dict) for v in tree.values())
        return {k: (put(v) if keep else _cast_params(v, put, dtype)) for k, v in tree.items()}
    return put(tree).astype(dtype)

