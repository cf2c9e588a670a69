"""Video-Infinity's temporal layers on a block of clips (``docs/method.md``).

``ClipParallelTemporal`` implements the ``TemporalOps`` interface of ``models/temporal.py``. It runs
inside ``jax.shard_map`` over the mesh axis ``"clips"``: each device holds ``clips`` consecutive
clips of ``F`` frames. Neighbouring clips' edge frames (halos) are plain slices inside a device and
cross device boundaries with ``lax.ppermute`` (no wrap-around: the video's ends receive nothing);
the global-context rows of ``k`` and ``v`` are gathered from every device with ``lax.all_gather``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax import lax

from vinf_jax.config import VideoInfinityConfig
from vinf_jax.models.layers import GroupNorm, grouped
from vinf_jax.models.temporal import Window

AXIS = "clips"


@dataclasses.dataclass(frozen=True)
class ClipParallelTemporal:
    """Temporal ops for ``clips`` local clips out of ``num_clips``; runs inside shard_map over ``"clips"``.

    ``t`` is the (traced) diffusion timestep that selects the phase bias, so one compiled program
    serves every step.
    """

    frames: int
    clips: int
    num_clips: int
    vi: VideoInfinityConfig
    t: jax.Array

    @property
    def clip_frames(self) -> int:
        return self.frames // self.clips

    @property
    def devices(self) -> int:
        return self.num_clips // self.clips

    def clip_index(self) -> jax.Array:
        """Global index of each local clip, (clips,)."""
        return lax.axis_index(AXIS) * self.clips + jnp.arange(self.clips)

    # -- halos -------------------------------------------------------------------------------
    def _shift(self, x: jax.Array, direction: int) -> jax.Array:
        """Value of the neighbouring device (+1: from the left neighbour, -1: from the right).

        Devices at the ends of the video receive zeros (``ppermute`` fills non-receivers with 0).
        """
        d = self.devices
        if d == 1:
            return jnp.zeros_like(x)
        pairs = [(i, i + 1) for i in range(d - 1)] if direction > 0 else [(i + 1, i) for i in range(d - 1)]
        return lax.ppermute(x, AXIS, pairs)

    def halo_window(self, xc: jax.Array, pad: int) -> jax.Array:
        """(B, clips, F, ...) -> (B, clips, F + 2*pad, ...): [last pad of clip c-1, clip c, first pad of c+1].

        Only the ``pad`` edge frames cross devices, one ``ppermute`` per direction.
        """
        if pad == 0:
            return xc
        f = xc.shape[2]
        head, tail = xc[:, :, :pad], xc[:, :, f - pad:]
        left = jnp.concatenate([self._shift(tail[:, -1:], +1), tail[:, :-1]], axis=1)
        right = jnp.concatenate([head[:, 1:], self._shift(head[:, :1], -1)], axis=1)
        return jnp.concatenate([left, xc, right], axis=2)

    def in_video(self, pad: int) -> jax.Array:
        """(clips, F + 2*pad) bool: which window positions are frames of the video."""
        f, total = self.clip_frames, self.num_clips * self.clip_frames
        g = self.clip_index()[:, None] * f - pad + jnp.arange(f + 2 * pad)[None, :]
        return (g >= 0) & (g < total)

    # -- temporal conv -----------------------------------------------------------------------
    def conv_window(self, x: jax.Array) -> Window:
        pad = self.vi.conv_layer.padding
        b = x.shape[0]
        xc = x.reshape((b, self.clips, self.clip_frames) + x.shape[2:])
        win = self.halo_window(xc, pad)
        # "exact": frames outside the video do not exist (masked out of norms, zero conv padding);
        # "zeros": the released code's zero halos, which do enter the norm statistics.
        valid = self.in_video(pad) if (self.vi.edge_mode == "exact" and pad > 0) else None
        return Window(win, valid, pad)

    # -- group norm --------------------------------------------------------------------------
    def group_norm(self, norm: GroupNorm, x: jax.Array, valid: jax.Array | None) -> jax.Array:
        """Per-clip statistics over (frames, H, W, group channels), or pooled over every clip
        (``group_norm.sync``: sums and counts ``psum``-ed across the mesh)."""
        g = grouped(x, norm.num_groups)  # (B, clips, L, H, W, G, Cg)
        axes = (2, 3, 4, 6)
        per_frame = g.shape[3] * g.shape[4] * g.shape[6]
        if valid is None:
            mask = None
            count = jnp.full((self.clips,), g.shape[2] * per_frame, jnp.float32)
        else:
            mask = valid[None, :, :, None, None, None, None]
            count = valid.sum(axis=1).astype(jnp.float32) * per_frame
        masked = (lambda a: a) if mask is None else (lambda a: jnp.where(mask, a, 0.0))
        total = masked(g).sum(axis=axes, keepdims=True)  # (B, clips, 1, 1, 1, G, 1)
        count = count[None, :, None, None, None, None, None]
        if self.vi.group_norm.sync:
            total = lax.psum(total.sum(axis=1, keepdims=True), AXIS)
            count = lax.psum(count.sum(axis=1, keepdims=True), AXIS)
        mean = total / count
        sq = masked(jnp.square(g - mean)).sum(axis=axes, keepdims=True)
        if self.vi.group_norm.sync:
            sq = lax.psum(sq.sum(axis=1, keepdims=True), AXIS)
        return norm.normalize(x, mean, sq / count)

    # -- dual-scope attention ----------------------------------------------------------------
    def global_context(self, kc: jax.Array) -> jax.Array | None:
        """The G global rows of every clip, in clip order: (B, G, heads, d), or None if G == 0."""
        f, n = self.clip_frames, self.num_clips
        idx = self.vi.shared_frames(f, n)
        rows = self.vi.global_rows(f, n)
        if rows == 0:
            return None
        b = kc.shape[0]
        shared = kc[:, :, list(idx)].reshape((b, self.clips * len(idx)) + kc.shape[3:])
        if rows == n * len(idx):
            if self.devices == 1:
                return shared
            return lax.all_gather(shared, AXIS, axis=1, tiled=True)
        # The concatenation is cut to G < N*s rows (top_k < N, or striding gave more than
        # top_k // N rows): rows past G are never used, so instead of gathering them each device
        # adds its kept rows into a G-row buffer, one psum of exactly the rows the spec keeps.
        s = len(idx)
        slot = (self.clip_index()[:, None] * s + jnp.arange(s)[None, :]).reshape(-1)  # row in concat order
        onehot = jax.nn.one_hot(slot, rows, dtype=shared.dtype)  # (clips*s, G); all-zero past G
        buf = jnp.einsum("jg,bj...->bg...", onehot, shared)
        return buf if self.devices == 1 else lax.psum(buf, AXIS)

    def phase_bias(self) -> tuple[jax.Array, jax.Array]:
        """(local, global) logit biases for timestep t."""
        a = self.vi.attn
        t = jnp.asarray(self.t, jnp.float32)
        local = jnp.zeros((), jnp.float32)
        glob = jnp.zeros((), jnp.float32)
        if a.dynamic_scale:
            if a.local_phase is not None:
                on = t < a.local_phase.t
                local += jnp.where(on, a.local_phase.local_biase, 0.0)
                glob += jnp.where(on, a.local_phase.global_biase, 0.0)
            if a.global_phase is not None:
                on = t >= a.global_phase.t
                local += jnp.where(on, a.global_phase.local_biase, 0.0)
                glob += jnp.where(on, a.global_phase.global_biase, 0.0)
        return local, glob

    def attention(self, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        """(b, T, heads, d) each -> (b, T, heads, d). Per clip: F queries against
        [P left halo, F own, P right halo] local keys (a band of 2P+1 around each query) + G global keys."""
        a = self.vi.attn
        b, t, h, d = q.shape
        f, pad = self.clip_frames, a.padding
        split = lambda z: z.reshape(b, self.clips, f, h, d)
        qc, kc, vc = split(q), split(k), split(v)
        k_loc, v_loc = self.halo_window(kc, pad), self.halo_window(vc, pad)
        k_glob, v_glob = self.global_context(kc), self.global_context(vc)

        rows = jnp.arange(f)[:, None]
        cols = jnp.arange(f + 2 * pad)[None, :]
        visible = (cols >= rows) & (cols <= rows + 2 * pad)  # (F, F+2P): frames i-P .. i+P
        visible = jnp.broadcast_to(visible, (self.clips, f, f + 2 * pad))
        if self.vi.edge_mode == "exact":  # frames outside the video are masked, not zero keys
            visible = visible & self.in_video(pad)[:, None, :]
        n_visible = visible.sum(-1).astype(jnp.float32) + (0 if k_glob is None else k_glob.shape[1])

        scale = a.attn_scale / math.sqrt(d)
        if a.token_num_scale:  # row i scaled by ln(n_i) / ln(16), n_i = its unmasked columns
            scale = (scale * jnp.log(n_visible) / math.log(16.0))[None, :, None, :, None]
        local_bias, global_bias = self.phase_bias()
        logits = jnp.einsum("bnqhd,bnkhd->bnhqk", qc, k_loc, preferred_element_type=jnp.float32)
        logits = jnp.where(visible[None, :, None], logits * scale + local_bias, -jnp.inf)
        if k_glob is not None:
            g_logits = jnp.einsum("bnqhd,bkhd->bnhqk", qc, k_glob, preferred_element_type=jnp.float32)
            logits = jnp.concatenate([logits, g_logits * scale + global_bias], axis=-1)
        probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        nloc = f + 2 * pad
        out = jnp.einsum("bnhqk,bnkhd->bnqhd", probs[..., :nloc], v_loc)
        if v_glob is not None:
            out = out + jnp.einsum("bnhqk,bkhd->bnqhd", probs[..., nloc:], v_glob)
        return out.reshape(b, t, h, d)


def local_clip_ids(clips: int) -> jax.Array:
    """Global indices of the ``clips`` clips this device holds (inside shard_map over ``"clips"``)."""
    return lax.axis_index(AXIS) * clips + jnp.arange(clips)
