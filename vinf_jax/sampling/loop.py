"""The denoising loop as ONE compiled program: jit(shard_map(fori_loop(UNet with CFG -> solver step))).

T2V-Turbo (``solver.kind == "t2v-turbo"``) runs one UNet pass per step instead: batch 1, the guidance
scale embedded in the UNet, and the motion-guidance scale while ``t >= threshold`` (method §12).

Each device holds ``clips`` consecutive clips. Noise comes from keys derived from (seed, clip, step)
alone, never from the device index, so the video does not depend on how many devices run it.
"""

from __future__ import annotations

import dataclasses
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from vinf_jax.config import VideoInfinityConfig
from vinf_jax.parallel.apply import CONTEXT_SPEC, LATENT_SPEC, local_unet
from vinf_jax.parallel.context import AXIS, local_clip_ids
from vinf_jax.sampling.schedulers import Solver

def clip_key(seed: jax.Array, clip: jax.Array, step: jax.Array) -> jax.Array:
    """The key of (seed, clip, step); step -1 draws the initial noise."""
    key = jax.random.fold_in(jax.random.key(seed), clip)
    return jax.random.fold_in(key, step + 1)


def clip_noise(seed, clips, step, shape, dtype=jnp.float32) -> jax.Array:
    """(1, clips * F, H, W, C) standard normal noise, one key per local clip; shape = (F, H, W, C)."""
    ids = local_clip_ids(clips)
    noise = jax.vmap(lambda c: jax.random.normal(clip_key(seed, c, step), shape, dtype))(ids)
    return noise.reshape((1, clips * shape[0]) + shape[1:])


@dataclasses.dataclass(frozen=True, eq=False)
class DenoiseLoop:
    """Static description of one compiled loop; ``build`` returns its jitted functions.

    ``run(params, carry, cond, uncond, guidance, fps, seed, start, stop, motion)`` denoises steps
    ``start..stop-1`` as one ``fori_loop`` with traced bounds: the same compiled program runs the
    whole loop in one call, or a segment at a time when the caller reports progress between
    segments. No host callback lives inside it, so JAX's persistent compilation cache can store it.
    ``carry = (latents, solver state, first bad step)`` comes from ``begin(latents)``. ``motion`` is
    ``[motion_gs, t threshold]`` (float32), read only by T2V-Turbo with ``motion_input``.
    """

    model: object  # vinf_jax.loading.Model of the UNet
    vi: VideoInfinityConfig
    num_clips: int
    frames: int  # F, frames per clip
    latent_hw: tuple[int, int]
    channels: int
    solver: Solver
    mesh: Mesh
    motion_input: bool = False  # T2V-Turbo with motion guidance: the UNet gets a motion scale every step

    def build(self):
        f, (h, w), ch = self.frames, self.latent_hw, self.channels
        solver, clips = self.solver, self.num_clips // self.mesh.size
        unet = local_unet(self.model, self.vi, self.num_clips)

        turbo, motion_input = solver.kind == "t2v-turbo", self.motion_input

        def denoise_loop(params, carry, cond, uncond, guidance, fps, seed, start, stop, motion):
            """Inside shard_map over "clips": latents (1, clips*F, h, w, C) f32, cond (1, clips, L, D)."""
            timesteps = jnp.asarray(solver.timesteps, jnp.int32)
            if not turbo:
                ctx = jnp.concatenate([jnp.broadcast_to(uncond[:, None], cond.shape), cond], axis=0)
            fps1, fps2 = jnp.full((1,), fps, jnp.float32), jnp.full((2,), fps, jnp.float32)

            def predict(x, t):
                if turbo:  # one pass: w is an input of the UNet, no unconditional batch
                    m = jnp.where(t >= motion[1], motion[0], 0.0)[None] if motion_input else None
                    return unet(params, x, t, cond, fps1, guidance=guidance[None], motion=m).astype(jnp.float32)
                eps = unet(params, jnp.concatenate([x, x], axis=0), t, ctx, fps2).astype(jnp.float32)
                return eps[:1] + guidance * (eps[1:] - eps[:1])

            def body(i, carry):
                x, state, bad = carry
                t = timesteps[i]
                eps = predict(x, t)
                noise = clip_noise(seed, clips, i, (f, h, w, ch)) if solver.needs_noise else None
                x, state = solver.step(state, i, eps, x, noise)
                # first step whose latents hold NaN/inf on this device (-1: none); one reduction a step
                bad = jnp.where((bad < 0) & ~jnp.isfinite(x).all(), i, bad)
                return x, state, bad

            x, state, bad = carry
            x, state, bad = jax.lax.fori_loop(start, stop, body, (x, state, bad[0]))
            return x, state, bad[None]

        def begin(latents):
            x = latents * solver.init_noise_sigma
            return x, solver.init_state(x), jnp.full((1,), -1, jnp.int32)

        def init_noise(seed):
            return clip_noise(seed, clips, -1, (f, h, w, ch))

        carry_spec = (LATENT_SPEC, LATENT_SPEC, P(AXIS))  # every solver-state leaf is shaped like x
        sharded = jax.shard_map(denoise_loop, mesh=self.mesh,
                                in_specs=(P(), carry_spec, CONTEXT_SPEC, P(), P(), P(), P(), P(), P(), P()),
                                out_specs=carry_spec)
        begin = jax.shard_map(begin, mesh=self.mesh, in_specs=LATENT_SPEC, out_specs=carry_spec)
        noise = jax.shard_map(init_noise, mesh=self.mesh, in_specs=P(), out_specs=LATENT_SPEC)
        return jax.jit(sharded), jax.jit(begin), jax.jit(noise)
