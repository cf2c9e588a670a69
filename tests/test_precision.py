"""Half-precision runs keep what is sensitive in float32: norms' parameters and statistics, the noise
prediction leaving the UNet (guidance multiplies its error by ~2 x 12), the VAE's division by its
scaling factor. Checked on the programs' types (abstract evaluation, no compile); the error they
buy is measured in benchmarks/precision.py."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx


def test_norm_parameters_stay_float32():
    from vinf_jax import tiny
    from vinf_jax.loading import Model
    from vinf_jax.pipeline import _cast_params

    model = Model("unet", tiny.UNET)
    cast = jax.tree_util.tree_flatten_with_path(_cast_params(model.abstract, lambda a: jnp.zeros(a.shape), jnp.bfloat16))[0]
    dtypes = {jax.tree_util.keystr(k): v.dtype for k, v in cast}
    norms = [k for k in dtypes if "norm" in k and ("'scale'" in k or "'bias'" in k)]
    assert len(norms) > 20 and all(dtypes[k] == jnp.float32 for k in norms)
    assert {dtypes[k] for k in dtypes if "'kernel'" in k} == {jnp.dtype(jnp.bfloat16)}


def test_bf16_unet_returns_float32_noise_prediction():
    from vinf_jax import tiny
    from vinf_jax.loading import Model
    from vinf_jax.pipeline import _cast_params

    model = Model("unet", tiny.UNET)
    params = _cast_params(model.abstract, lambda a: jnp.zeros(a.shape, jnp.float32), jnp.bfloat16)
    out = jax.eval_shape(lambda p, x, c: model.module(p)(x, 10.0, c), params,
                         jax.ShapeDtypeStruct((1, 2, 8, 8, 4), jnp.bfloat16), jax.ShapeDtypeStruct((1, 5, 32), jnp.bfloat16))
    assert out.dtype == jnp.float32


def test_vae_divides_by_its_scaling_factor_in_float32():
    from vinf_jax import tiny
    from vinf_jax.models.vae import VAEDecoder

    vae = nnx.eval_shape(lambda: VAEDecoder(tiny.VAE, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(vae)
    state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.bfloat16), state)
    jaxpr = jax.make_jaxpr(lambda s, z: nnx.merge(graphdef, s).decode(z))(state, jnp.zeros((1, 4, 4, 4), jnp.float32))
    first_div = next(e for e in jaxpr.jaxpr.eqns if e.primitive.name == "div")
    assert [v.aval.dtype for v in first_div.invars] == [jnp.float32, jnp.float32]


@pytest.mark.parametrize("platform,want", [("gpu", jnp.bfloat16), ("cpu", jnp.float32)])
def test_float16_says_what_it_computes(platform, want):
    from vinf_jax.config import compute_dtype

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert compute_dtype("float16", platform) == np.dtype(want).name
        assert compute_dtype("bfloat16", platform) == "bfloat16" and compute_dtype("auto", platform) == np.dtype(want).name
    assert len(caught) == 1 and f"computing in {np.dtype(want).name} on {platform}" in str(caught[0].message)
