"""Build models from stored configs and params; ``load_unet`` for the plain (one-clip) UNet call."""

from __future__ import annotations

import contextlib
import functools
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vinf_jax.checkpoint import load_params, read_json
from vinf_jax.errors import CheckpointError
from vinf_jax.models.unet3d import UNet3D, UNetConfig


@contextlib.contextmanager
def _no_tracer_provenance():
    """Skip jax's tracer-provenance text while building abstract modules.

    flax 0.12 probes ``getattr(tracer, "sharding", None)`` for every parameter under
    ``nnx.eval_shape``; for each probe jax builds an AttributeError message describing the
    tracer's origin, which grows with the trace (quadratic overall) and is then thrown away by
    getattr. For the full UNet that is 30-70 s of string building instead of ~2 s. Only the text
    of swallowed errors changes; on another jax layout this does nothing.
    """
    try:
        from jax._src.interpreters import partial_eval as pe

        original = pe.DynamicJaxprTracer._origin_msg
    except (ImportError, AttributeError):
        yield
        return
    pe.DynamicJaxprTracer._origin_msg = lambda self: ""
    try:
        yield
    finally:
        pe.DynamicJaxprTracer._origin_msg = original


def abstract_module(ctor):
    """(graphdef, abstract nnx.State) of the module ``ctor(rngs)`` builds, allocating nothing."""
    with _no_tracer_provenance():
        return nnx.split(nnx.eval_shape(lambda: ctor(nnx.Rngs(0))))


def abstract_params(ctor) -> tuple[nnx.GraphDef, dict]:
    """(graphdef, pure dict of ShapeDtypeStructs) of the module ``ctor()`` builds, allocating nothing."""
    graphdef, state = abstract_module(ctor)
    return graphdef, nnx.to_pure_dict(state)


@functools.lru_cache(maxsize=8)
def _unet_abstract(cfg: UNetConfig):
    return abstract_module(lambda rngs: UNet3D(cfg, rngs=rngs))


def unet_from_config(cfg: UNetConfig):
    graphdef, state = _unet_abstract(cfg)
    return graphdef, nnx.to_pure_dict(state)


class BoundModel:
    """A module as (graphdef, params): ``module(params)`` rebuilds it inside a trace, so jitted
    functions take the parameters as arguments instead of closing over 1.4 B constants."""

    def __init__(self, ctor, config, params: dict, abstract=None):
        self.config = config
        self.graphdef, self._state = abstract or abstract_module(ctor)
        self.params = params

    @property
    def abstract(self) -> dict:
        """Pure dict of the parameters' ShapeDtypeStructs."""
        return nnx.to_pure_dict(self._state)

    def module(self, params):
        state = jax.tree.map(lambda x: x, self._state)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(self.graphdef, state)


class UNetModel(BoundModel):
    def __init__(self, cfg: UNetConfig, params: dict):
        super().__init__(None, cfg, params, abstract=_unet_abstract(cfg))


def read_unet(folder: str | Path) -> UNetModel:
    """UNet config + params from ``folder`` (a checkpoint root holding ``unet/``, or that folder)."""
    folder = Path(folder)
    if (folder / "unet").is_dir():
        folder = folder / "unet"
    if not folder.is_dir():
        raise CheckpointError(f"unet: checkpoint folder {folder} does not exist")
    cfg_dict = read_json(folder / "config.json", "unet")
    try:
        cfg = UNetConfig.from_dict(cfg_dict)
    except TypeError as e:
        raise CheckpointError(f"unet: {folder / 'config.json'} is not a UNet config: {e}") from None
    _, abstract = unet_from_config(cfg)
    return UNetModel(cfg, load_params(folder, abstract, "unet"))


class LoadedUNet:
    """``unet(sample, timestep, encoder_hidden_states, fps=24)`` in diffusers' layout, jitted.

    sample (batch, channels, frames, height, width) -> noise prediction of the same shape. One clip,
    vanilla temporal layers (the Video-Infinity version is ``VideoInfinityPipeline.predict_noise``).
    """

    def __init__(self, model: UNetModel, dtype=jnp.float32):
        self.model = model
        self.config = model.config
        self.dtype = dtype
        self.params = jax.tree.map(lambda a: jnp.asarray(a, dtype), model.params)

    @partial(jax.jit, static_argnums=0)
    def _run(self, params, sample, timestep, context, fps):
        unet = self.model.module(params)
        x = jnp.transpose(sample, (0, 2, 3, 4, 1))
        out = unet(x, timestep, context, fps)
        return jnp.transpose(out, (0, 4, 1, 2, 3)).astype(jnp.float32)

    def __call__(self, sample, timestep, encoder_hidden_states, fps=24):
        b = np.shape(sample)[0]
        t = jnp.broadcast_to(jnp.asarray(timestep, jnp.float32), (b,))
        f = jnp.broadcast_to(jnp.asarray(fps, jnp.float32), (b,))
        return self._run(self.params, jnp.asarray(sample, self.dtype), t,
                         jnp.asarray(encoder_hidden_states, self.dtype), f)


def load_unet(path: str | Path, dtype=jnp.float32) -> LoadedUNet:
    """The converted UNet at ``path`` as a jitted callable in diffusers' layout."""
    return LoadedUNet(read_unet(path), dtype)
