"""Video-Infinity's temporal layers on a block of clips (``docs/method.md``).

``ClipParallelTemporal`` implements the ``TemporalOps`` interface of ``models/temporal.py``. It runs
inside ``jax.shard_map`` over the mesh axis ``"clips"``: each device holds ``clips`` consecutive
clips of ``F`` frames. Neighbouring clips' edge frames (halos) are plain slices inside a device and
cross device boundaries with ``lax.ppermute`` (no wrap-around: the video's ends receive nothing);
the global-context rows are gathered from every device with ``lax.all_gather``. Whatever one layer
exchanges (k and v, or the attention's input rows) travels packed: one ``ppermute`` per direction
and one gather per layer.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vinf_jax.config import VideoInfinityConfig
from vinf_jax.models.layers import GroupNorm, grouped, logits_einsum, probs_times_values
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

    def halos(self, parts: tuple[jax.Array, ...], pad: int) -> list[tuple[jax.Array, jax.Array]]:
        """For each (B, clips, F, ...) array: (left, right) halos (B, clips, pad, ...), the last
        ``pad`` frames of clip c-1 and the first ``pad`` of clip c+1.

        Only the edge clips' ``pad`` frames cross devices, all parts stacked into one ``ppermute``
        per direction.
        """
        f = self.clip_frames
        to_right = self._shift(jnp.stack([p[:, -1:, f - pad:] for p in parts]), +1)
        to_left = self._shift(jnp.stack([p[:, :1, :pad] for p in parts]), -1)
        out = []
        for i, p in enumerate(parts):
            left = jnp.concatenate([to_right[i], p[:, :-1, f - pad:]], axis=1)
            right = jnp.concatenate([p[:, 1:, :pad], to_left[i]], axis=1)
            out.append((left, right))
        return out

    def halo_window(self, xc: jax.Array, pad: int) -> jax.Array:
        """(B, clips, F, ...) -> (B, clips, F + 2*pad, ...): [last pad of clip c-1, clip c, first pad of c+1]."""
        if pad == 0:
            return xc
        ((left, right),) = self.halos((xc,), pad)
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
    def _window_counts(self, length: int, exact: bool) -> np.ndarray:
        """Frames entering the statistics of each of the N clips, (N,), known at trace time."""
        pad = (length - self.clip_frames) // 2
        if not exact:
            return np.full((self.num_clips,), length)
        first = np.arange(self.num_clips)[:, None] * self.clip_frames - pad + np.arange(length)[None, :]
        return ((first >= 0) & (first < self.num_clips * self.clip_frames)).sum(axis=1)

    def group_norm(self, norm: GroupNorm, x: jax.Array, valid: jax.Array | None) -> jax.Array:
        """Per-clip statistics over (frames, H, W, group channels), or pooled over every clip
        (``group_norm.sync``).

        One float32 pass over the data: sums of ``x - K`` and its square, with ``K`` the mean of one
        row of the clip's middle frame (an own frame of every window), so the sum of squares does
        not cancel the mean away (a plain ``E[x^2] - E[x]^2`` would for ``|mean| >> std``). Each
        clip's (mean, centred sum of squares) then merge exactly over clips (Chan et al.): with
        sync, one ``all_gather`` of those per-clip pairs, merged in clip order on every device, so
        the pooled statistics do not depend on how many devices hold the clips. The counts are
        static (which window frames exist depends only on the clip's index).
        """
        g = grouped(x, norm.num_groups)  # (B, clips, L, H, W, G, Cg)
        length = g.shape[2]
        per_frame = g.shape[3] * g.shape[4] * g.shape[6]
        shift = g[:, :, length // 2, :1].mean(axis=(2, 3, 5))[:, :, None, None, None, :, None]  # (B, clips, 1, 1, 1, G, 1)
        dev = g - shift
        # per-frame sums first, masked after: the mask then touches (B, clips, L, G) numbers, and
        # the full-size deviations are never written out (XLA fuses them into the reductions)
        s1 = dev.sum(axis=(3, 4, 6), keepdims=True)  # (B, clips, L, 1, 1, G, 1)
        s2 = jnp.square(dev).sum(axis=(3, 4, 6), keepdims=True)
        if valid is not None:
            mask = valid[None, :, :, None, None, None, None]
            s1, s2 = jnp.where(mask, s1, 0.0), jnp.where(mask, s2, 0.0)
        s1, s2 = s1.sum(axis=2, keepdims=True), s2.sum(axis=2, keepdims=True)
        counts = self._window_counts(length, valid is not None) * per_frame  # (N,)
        # Divide by multiplying with 1/count rounded once on the host: dividing by a count that is a
        # constant on one device but a gathered value on many lets XLA round differently per device
        # count (it folds constant divisions into multiplications), and the video would depend on it.
        inv = np.float32(1) / counts.astype(np.float32)
        if valid is None:
            inv_count = jnp.float32(inv[0])
        else:
            inv_count = jnp.asarray(inv)[self.clip_index()][None, :, None, None, None, None, None]
        mean = shift + s1 * inv_count
        m2 = s2 - s1 * (s1 * inv_count)
        if not self.vi.group_norm.sync:
            return norm.normalize(x, mean, m2 * inv_count)
        stats = jnp.stack([mean, m2])  # (2, B, clips, 1, 1, 1, G, 1)
        if self.devices > 1:
            stats = lax.all_gather(stats, AXIS, axis=2, tiled=True)  # every clip in clip order
        n_c = jnp.asarray(counts, jnp.float32)[None, :, None, None, None, None, None]
        total = float(counts.sum())
        mean_c, m2_c = stats[0], stats[1]
        pooled = (n_c * mean_c).sum(axis=1, keepdims=True) / total
        m2 = m2_c.sum(axis=1, keepdims=True) + (n_c * jnp.square(mean_c - pooled)).sum(axis=1, keepdims=True)
        return norm.normalize(x, pooled, m2 / total)

    # -- dual-scope attention ----------------------------------------------------------------
    def _shared(self, xc: jax.Array) -> jax.Array:
        """The shared frames of each local clip by a strided slice, (B, clips * R, ...) in clip order."""
        f, n = self.clip_frames, self.num_clips
        idx = self.vi.shared_frames(f, n)
        step = idx[1] - idx[0] if len(idx) > 1 else 1
        rows = xc[:, :, idx[0]:idx[-1] + 1:step]
        return rows.reshape((rows.shape[0], self.clips * len(idx)) + rows.shape[3:])

    def global_context(self, parts: tuple[jax.Array, ...]) -> list[jax.Array] | None:
        """The G global rows of every clip, in clip order, for each (B, clips, F, ...) part:
        (B, G, ...) each, or None if G == 0. All parts travel in one collective."""
        f, n = self.clip_frames, self.num_clips
        rows = self.vi.global_rows(f, n)
        if rows == 0:
            return None
        s = len(self.vi.shared_frames(f, n))
        shared = jnp.stack([self._shared(p) for p in parts], axis=1)  # (B, parts, clips*s, ...)
        if rows == n * s:
            if self.devices > 1:
                shared = lax.all_gather(shared, AXIS, axis=2, tiled=True)
        else:
            # The concatenation is cut to G < N*s rows (top_k < N, or striding gave more than
            # top_k // N rows): rows past G are never used, so instead of gathering them each device
            # adds its kept rows into a G-row buffer, one psum of exactly the rows the method keeps (docs/method.md §5.1).
            slot = (self.clip_index()[:, None] * s + jnp.arange(s)[None, :]).reshape(-1)  # row in concat order
            onehot = jax.nn.one_hot(slot, rows, dtype=shared.dtype)  # (clips*s, G); all-zero past G
            shared = jnp.einsum("jg,bpj...->bpg...", onehot, shared)
            if self.devices > 1:
                shared = lax.psum(shared, AXIS)
        return [shared[:, i] for i in range(len(parts))]

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

    def windows(self, parts: tuple[jax.Array, ...]) -> list[jax.Array]:
        """Each (B, clips, F, ...) part -> (B, clips, F + 2P + G, ...): [left halo, own frames,
        right halo, global rows], one tensor per clip, everything exchanged in one round."""
        pad = self.vi.attn.padding
        b = parts[0].shape[0]
        sides = self.halos(parts, pad) if pad > 0 else [(None, None)] * len(parts)
        glob = self.global_context(parts)
        out = []
        for i, p in enumerate(parts):
            pieces = [sides[i][0], p, sides[i][1]] if pad > 0 else [p]
            if glob is not None:
                pieces.append(jnp.broadcast_to(glob[i][:, None], (b, self.clips) + glob[i].shape[1:]))
            out.append(jnp.concatenate(pieces, axis=2) if len(pieces) > 1 else p)
        return out

    def attention_bias(self, global_cols: int) -> tuple[jax.Array, jax.Array]:
        """(bias (clips, F, F + 2P + G) float32, visible keys per row (clips, F)).

        Local column m of query row i is visible for i <= m <= i + 2P (frames i-P .. i+P) and, in
        ``exact`` mode, only if it is a frame of the video; masked columns get -inf, visible local
        ones the local phase bias, global ones the global phase bias.
        """
        f, pad = self.clip_frames, self.vi.attn.padding
        rows = jnp.arange(f)[:, None]
        cols = jnp.arange(f + 2 * pad)[None, :]
        visible = (cols >= rows) & (cols <= rows + 2 * pad)  # (F, F+2P)
        visible = jnp.broadcast_to(visible, (self.clips, f, f + 2 * pad))
        if self.vi.edge_mode == "exact":  # frames outside the video are masked, not zero keys
            visible = visible & self.in_video(pad)[:, None, :]
        local_bias, global_bias = self.phase_bias()
        bias = jnp.where(visible, local_bias, -jnp.inf)
        if global_cols:
            bias = jnp.concatenate([bias, jnp.broadcast_to(global_bias, (self.clips, f, global_cols))], axis=-1)
        return bias, visible.sum(-1).astype(jnp.float32) + global_cols

    def attention(self, z: jax.Array, q_of, kv_of) -> jax.Array:
        """z (b, T, C) -> (b, T, heads, d). Per clip: F queries against one key/value tensor of
        [P left halo, F own, P right halo, G global] rows, one additive bias (band, edges, phases),
        logits written once, one softmax and one output einsum.

        ``exchange: kv`` projects k and v locally and exchanges their halo and global rows;
        ``exchange: inputs`` exchanges the rows of z (half the bytes) and projects the 2P + G extra
        rows here. The projections have no bias, so a zero halo row (edge mode ``zeros``) gives zero
        k and v either way.
        """
        a = self.vi.attn
        b, t, _ = z.shape
        f = self.clip_frames
        zc = z.reshape(b, self.clips, f, -1)
        q = q_of(zc)  # (b, clips, F, h, d)
        if a.exchange == "inputs":
            (z_all,) = self.windows((zc,))
            k_all, v_all = kv_of(z_all)
        else:
            k_all, v_all = self.windows(kv_of(zc))
        h, d = q.shape[-2:]
        bias, n_visible = self.attention_bias(k_all.shape[2] - f - 2 * a.padding)
        scale = a.attn_scale / math.sqrt(d)
        if a.token_num_scale:  # row i scaled by ln(n_i) / ln(16), n_i = its unmasked columns
            scale = (scale * jnp.log(n_visible) / math.log(16.0))[None, :, None, :, None]
        logits = logits_einsum("bnqhd,bnkhd->bnhqk", q, k_all)
        probs = jax.nn.softmax(logits * scale + bias[None, :, None], axis=-1)
        out = probs_times_values("bnhqk,bnkhd->bnqhd", probs, v_all)
        return out.reshape(b, t, h, d)


def local_clip_ids(clips: int) -> jax.Array:
    """Global indices of the ``clips`` clips this device holds (inside shard_map over ``"clips"``)."""
    return lax.axis_index(AXIS) * clips + jnp.arange(clips)
