"""Build models from stored configs and params; ``load_unet`` for the plain (one-clip) UNet call."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vinf_jax.checkpoint import load_params, read_json
from vinf_jax.errors import CheckpointError
from vinf_jax.models.unet3d import UNet3D, UNetConfig


def abstract_params(ctor) -> tuple[nnx.GraphDef, dict]:
    """(graphdef, pure dict of ShapeDtypeStructs) of the module ``ctor()`` builds, allocating nothing."""
    model = nnx.eval_shape(lambda: ctor(nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    return graphdef, nnx.to_pure_dict(state)


def unet_from_config(cfg: UNetConfig):
    return abstract_params(lambda rngs: UNet3D(cfg, rngs=rngs))


class BoundModel:
    """A module as (graphdef, params): ``module(params)`` rebuilds it inside a trace, so jitted
    functions take the parameters as arguments instead of closing over 1.4 B constants."""

    def __init__(self, ctor, config, params: dict):
        self.config = config
        abstract_module = nnx.eval_shape(lambda: ctor(nnx.Rngs(0)))
        self.graphdef, self._state = nnx.split(abstract_module)
        self.params = params

    def module(self, params):
        state = jax.tree.map(lambda x: x, self._state)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(self.graphdef, state)


class UNetModel(BoundModel):
    def __init__(self, cfg: UNetConfig, params: dict):
        super().__init__(lambda rngs: UNet3D(cfg, rngs=rngs), cfg, params)


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
