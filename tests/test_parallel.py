"""The clip-parallel UNet (shard_map over "clips") against the plain oracle of docs/method.md."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vi_oracle import OracleSpec, patch_oracle, random_params
from vinf_jax.config import AttnConfig, ConvLayerConfig, GroupNormConfig, Phase, VideoInfinityConfig
from vinf_jax.loading import Model, abstract_params
from vinf_jax.models.unet3d import UNetConfig
from vinf_jax.parallel.apply import sharded_unet
from vinf_jax.parallel.mesh import clip_mesh, clip_sharding, replicated

REL = 1e-5  # max |diff| <= REL * max |oracle|, float32

# The smallest UNet that still has every temporal layer kind: transformer_in, temp_convs and
# temp_attentions in a down, mid and up block.
MICRO = UNetConfig(down_block_types=("CrossAttnDownBlock3D",), up_block_types=("CrossAttnUpBlock3D",),
                   block_out_channels=(8,), layers_per_block=1, norm_num_groups=2, attention_head_dim=4,
                   cross_attention_dim=6)


@functools.lru_cache(maxsize=None)
def micro_model(cfg=MICRO):
    return Model("unet", cfg, random_params(abstract_params("unet", cfg), seed=3))


def inputs(n, f, seed=0, h=4, w=4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, n * f, h, w, 4)).astype(np.float32)  # batch 2, as with guidance
    ctx = rng.standard_normal((2, n, 3, MICRO.cross_attention_dim)).astype(np.float32)
    return x, ctx


def run_sharded(vi, n, d, x, ctx, t, fps=24.0):
    model = micro_model()
    mesh = clip_mesh(d)
    f = jax.jit(sharded_unet(model, vi, n, mesh))
    put = lambda a, s: jax.device_put(a, s)
    params = jax.device_put(model.params, replicated(mesh))
    return np.asarray(f(params, put(x, clip_sharding(mesh, 5, 1)), jnp.float32(t),
                        put(ctx, clip_sharding(mesh, 4, 1)), jnp.full((2,), fps, jnp.float32)))


def run_oracle(vi, n, x, ctx, t, fps=24.0):
    model = micro_model()
    unet = model.module(model.params)
    spec = OracleSpec(frames=x.shape[1], num_clips=n, vi=vi, t=float(t))
    return np.asarray(unet(jnp.asarray(x), jnp.float32(t), jnp.asarray(ctx), jnp.full((2,), fps), spec))


def vi_config(edge="exact", sync=False, tns=False, top_k=4, padding=2, conv_pad=2, dynamic=True, exchange="kv"):
    return VideoInfinityConfig(
        attn=AttnConfig(padding=padding, top_k=top_k, token_num_scale=tns, dynamic_scale=dynamic,
                        local_phase=Phase(500, 3.0, 0.0), global_phase=Phase(500, 0.0, 2.0), exchange=exchange),
        conv_layer=ConvLayerConfig(padding=conv_pad), group_norm=GroupNormConfig(sync=sync), edge_mode=edge)


def close(a, ref):
    err = np.abs(a - ref).max()
    assert err <= REL * np.abs(ref).max(), (err, np.abs(ref).max())


# Each case crosses several switches (pairwise), run on every device count. F=4 unless stated.
CASES = [
    # id, vi kwargs, N per D (N = D or 2D), F, t
    ("exact-nosync", dict(edge="exact"), 1, 4, 700.0),
    ("zeros-sync-tns", dict(edge="zeros", sync=True, tns=True), 2, 4, 100.0),
    ("exact-sync-topk<N", dict(edge="exact", sync=True, top_k=3), 2, 4, 900.0),
    ("zeros-stride", dict(edge="zeros", top_k=8, tns=True, padding=3, conv_pad=3), 1, 6, 300.0),
]


@pytest.mark.parametrize("d", [1, 2, 4, 8])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_sharded_matches_oracle(case, d, monkeypatch):
    _, kw, per_d, f, t = case
    n = per_d * d
    vi = vi_config(**kw)
    x, ctx = inputs(n, f, seed=d)
    got = run_sharded(vi, n, d, x, ctx, t)
    with monkeypatch.context() as m:
        patch_oracle(m)
        ref = run_oracle(vi, n, x, ctx, t)
    close(got, ref)


# attn.exchange "inputs": the attention's input rows cross devices and k, v are projected on arrival.
INPUT_CASES = [
    ("inputs-zeros-sync-topk<N-tns", dict(edge="zeros", sync=True, top_k=3, tns=True, exchange="inputs"), 2, 4, 900.0, 1),
    ("inputs-zeros-sync-topk<N-tns", dict(edge="zeros", sync=True, top_k=3, tns=True, exchange="inputs"), 2, 4, 900.0, 8),
    ("inputs-exact-stride", dict(edge="exact", top_k=8, padding=3, conv_pad=3, exchange="inputs"), 1, 6, 300.0, 2),
    ("inputs-exact-stride", dict(edge="exact", top_k=8, padding=3, conv_pad=3, exchange="inputs"), 1, 6, 300.0, 4),
]


@pytest.mark.parametrize("case", INPUT_CASES, ids=[f"{c[0]}-d{c[5]}" for c in INPUT_CASES])
def test_input_exchange_matches_oracle(case, monkeypatch):
    _, kw, per_d, f, t, d = case
    n = per_d * d
    vi = vi_config(**kw)
    x, ctx = inputs(n, f, seed=20 + d)
    got = run_sharded(vi, n, d, x, ctx, t)
    with monkeypatch.context() as m:
        patch_oracle(m)
        ref = run_oracle(vi, n, x, ctx, t)
    close(got, ref)


def test_phase_threshold_is_traced():
    """One compiled program: t on both sides of the phase threshold changes the output."""
    vi = vi_config()
    x, ctx = inputs(2, 4)
    a = run_sharded(vi, 2, 2, x, ctx, 499.0)
    b = run_sharded(vi, 2, 2, x, ctx, 500.0)
    assert np.abs(a - b).max() > 1e-4


def test_device_count_invariance():
    vi = vi_config(edge="zeros", sync=True, top_k=5)
    x, ctx = inputs(8, 4, seed=11)
    outs = [run_sharded(vi, 8, d, x, ctx, 850.0) for d in (1, 2, 4, 8)]
    for o in outs[1:]:
        close(o, outs[0])


def test_reduces_to_vanilla():
    """edge_mode exact, N = 1, padding >= F - 1, top_k = 0: the vanilla (diffusers) UNet."""
    vi = vi_config(edge="exact", top_k=0, padding=3, conv_pad=4)
    x, ctx = inputs(1, 4, seed=5)
    got = run_sharded(vi, 1, 1, x, ctx, 321.0)
    model = micro_model()
    van = np.asarray(model.module(model.params)(jnp.asarray(x), jnp.float32(321.0), jnp.asarray(ctx[:, 0]),
                                                 jnp.full((2,), 24.0)))
    close(got, van)


@pytest.mark.parametrize("exchange", ["kv", "inputs"])
def test_hlo_communication_is_the_designed_one(exchange):
    """D = 8: halos move by collective-permute, global context by all-gather of exactly G rows;
    k and v travel packed (one ppermute per direction, one all-gather per attention), or the
    attention's input rows instead of them."""
    import re

    n, f, d = 8, 6, 8
    vi = vi_config(top_k=16, padding=2, conv_pad=2, exchange=exchange)  # S = 2 rows per clip, stride 3, G = 16
    g_rows = vi.global_rows(f, n)
    assert g_rows == 16
    model = micro_model()
    mesh = clip_mesh(d)
    fn = jax.jit(sharded_unet(model, vi, n, mesh))
    x, ctx = inputs(n, f)
    hlo = fn.lower(jax.device_put(model.params, replicated(mesh)), jax.device_put(x, clip_sharding(mesh, 5, 1)),
                   jnp.float32(900.0), jax.device_put(ctx, clip_sharding(mesh, 4, 1)),
                   jnp.full((2,), 24.0, jnp.float32)).compile().as_text()
    assert "collective-permute" in hlo
    gathers = re.findall(r"= \w+\[([\d,]+)\][^\n]*? all-gather\(", hlo)
    assert gathers, "no all-gather in the compiled program"
    # kv: (b = 2*h*w, 2 = k and v, rows, heads, d); inputs: (b, 1, rows, channels). The gathered
    # row axis must be exactly G.
    heads_dims = {(MICRO.block_out_channels[0] // MICRO.attention_head_dim, MICRO.attention_head_dim),
                  (8, MICRO.attention_head_dim)}
    widths = {(MICRO.block_out_channels[0],), (8 * MICRO.attention_head_dim,)}
    for shape in gathers:
        dims = tuple(int(s) for s in shape.split(","))
        if exchange == "kv":
            assert dims[1:3] == (2, g_rows) and tuple(dims[3:]) in heads_dims, dims
        else:
            assert dims[1:3] == (1, g_rows) and tuple(dims[3:]) in widths, dims
    # one gather per attention, 2 per temporal transformer: transformer_in, 1 down, 1 mid, 2 up
    assert len(gathers) == 2 * 5, gathers
    assert "all-reduce" not in hlo or vi.group_norm.sync  # no stray reductions without norm sync


@pytest.mark.parametrize("kw", [dict(padding=0, conv_pad=0, top_k=0),  # no context at all
                                dict(edge="zeros", padding=4, conv_pad=4, top_k=1, dynamic=False)],  # P = F
                         ids=["no-context", "padding=F"])
def test_context_extremes_match_oracle(kw, monkeypatch):
    vi = vi_config(**kw)
    n, d = 4, 2
    x, ctx = inputs(n, 4, seed=7)
    got = run_sharded(vi, n, d, x, ctx, 600.0)
    with monkeypatch.context() as m:
        patch_oracle(m)
        ref = run_oracle(vi, n, x, ctx, 600.0)
    close(got, ref)
