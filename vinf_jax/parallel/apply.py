"""The clip-parallel UNet: the whole UNet under ``jax.shard_map`` over the ``"clips"`` axis."""

from __future__ import annotations


import jax
from jax.sharding import Mesh, PartitionSpec as P

from vinf_jax.config import VideoInfinityConfig
from vinf_jax.parallel.context import AXIS, ClipParallelTemporal

# Specs of the per-device arguments: latents (B, T, H, W, C) and per-clip text (B, N, L, D) are
# split along their clip axis; parameters, timestep and fps are replicated.
LATENT_SPEC = P(None, AXIS)
CONTEXT_SPEC = P(None, AXIS)


def local_unet(model, vi: VideoInfinityConfig, num_clips: int):
    """``f(params, x, t, ctx, fps, guidance=None, motion=None)`` for the block of clips one device holds.

    Runs inside shard_map over ``"clips"``: x (B, T_local, H, W, C) channels-last, ctx
    (B, clips_local, L, D), t a scalar (traced: selects the phase bias), fps (B,); guidance and
    motion (B,) are T2V-Turbo's embedded scales (frame-local: they only change the time embedding).
    """

    def f(params, x, t, ctx, fps, guidance=None, motion=None):
        unet = model.module(params)
        ops = ClipParallelTemporal(frames=x.shape[1], clips=ctx.shape[1], num_clips=num_clips, vi=vi, t=t)
        return unet(x, t, ctx, fps, ops, guidance=guidance, motion=motion)

    return f


def sharded_unet(model, vi: VideoInfinityConfig, num_clips: int, mesh: Mesh, *, guidance: bool = False,
                 motion: bool = False):
    """The UNet on the whole video, ``f(params, x (B, T, H, W, C), t, ctx (B, N, L, D), fps[, w][, m])``;
    inputs should already carry the matching NamedShardings (see ``parallel.mesh``). ``guidance`` /
    ``motion``: the function also takes T2V-Turbo's embedded scales w / m, (B,) each, replicated."""
    assert num_clips % mesh.shape[AXIS] == 0, (num_clips, mesh.shape)
    local = local_unet(model, vi, num_clips)

    def f(params, x, t, ctx, fps, *scales):
        w = scales[0] if guidance else None
        m = scales[-1] if motion else None
        return local(params, x, t, ctx, fps, guidance=w, motion=m)

    extra = (P(),) * (int(guidance) + int(motion))
    return jax.shard_map(f, mesh=mesh, in_specs=(P(), LATENT_SPEC, P(), CONTEXT_SPEC, P()) + extra,
                         out_specs=LATENT_SPEC)
