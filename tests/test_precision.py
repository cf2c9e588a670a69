"""Half-precision runs keep what is sensitive in float32: norms' parameters and statistics, the noise
prediction leaving the UNet (guidance multiplies its error by ~2 x 12), the VAE's division by its
scaling factor. Checked on the programs' types (abstract evaluation, no compile); the error they
buy is measured in benchmarks/precision.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx


HALF = [jnp.bfloat16, jnp.float16]


@pytest.mark.parametrize("half", HALF)
def test_norm_parameters_stay_float32(half):
    from vinf_jax import tiny
    from vinf_jax.loading import Model
    from vinf_jax.pipeline import _cast_params

    model = Model("unet", tiny.UNET)
    cast = jax.tree_util.tree_flatten_with_path(_cast_params(model.abstract, lambda a: jnp.zeros(a.shape), half))[0]
    dtypes = {jax.tree_util.keystr(k): v.dtype for k, v in cast}
    norms = [k for k in dtypes if "norm" in k and ("'scale'" in k or "'bias'" in k)]
    assert len(norms) > 20 and all(dtypes[k] == jnp.float32 for k in norms)
    assert {dtypes[k] for k in dtypes if "'kernel'" in k} == {jnp.dtype(half)}


@pytest.mark.parametrize("half", HALF)
def test_half_unet_returns_float32_noise_prediction(half):
    from vinf_jax import tiny
    from vinf_jax.loading import Model
    from vinf_jax.pipeline import _cast_params

    model = Model("unet", tiny.UNET)
    params = _cast_params(model.abstract, lambda a: jnp.zeros(a.shape, jnp.float32), half)
    out = jax.eval_shape(lambda p, x, c: model.module(p)(x, 10.0, c), params,
                         jax.ShapeDtypeStruct((1, 2, 8, 8, 4), half), jax.ShapeDtypeStruct((1, 5, 32), half))
    assert out.dtype == jnp.float32


@pytest.mark.parametrize("half", HALF)
def test_vae_divides_by_its_scaling_factor_in_float32(half):
    from vinf_jax import tiny
    from vinf_jax.models.vae import VAEDecoder

    vae = nnx.eval_shape(lambda: VAEDecoder(tiny.VAE, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(vae)
    state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, half), state)
    jaxpr = jax.make_jaxpr(lambda s, z: nnx.merge(graphdef, s).decode(z))(state, jnp.zeros((1, 4, 4, 4), jnp.float32))
    first_div = next(e for e in jaxpr.jaxpr.eqns if e.primitive.name == "div")
    assert [v.aval.dtype for v in first_div.invars] == [jnp.float32, jnp.float32]


def test_float16_attention_logits_are_float32_products_of_float16_inputs():
    """XLA:CPU has no float16 x float16 -> float32 dot: the CPU widens the float16 operands first, which
    loses nothing (a product of two float16 numbers is exact in float32), so the logits equal a float32
    einsum of the float16-rounded inputs, as a GPU's float16 dot with float32 accumulation computes."""
    from vinf_jax.models.layers import dot_product_attention, logits_einsum

    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 5, 3, 8)), jnp.float16) for _ in range(3))
    got = logits_einsum("bqhd,bkhd->bhqk", q, k)
    want = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32),
                      precision=jax.lax.Precision.HIGHEST)
    assert got.dtype == jnp.float32 and np.array_equal(np.asarray(got), np.asarray(want))
    out = dot_product_attention(q, k, v, 8 ** -0.5)
    assert out.dtype == jnp.float16 and np.isfinite(np.asarray(out, np.float32)).all()
