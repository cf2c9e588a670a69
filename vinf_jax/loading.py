"""Models from configs and stored parameters: the one bound-model type, checkpoint loading, ``load_unet``.

A :class:`Model` is (graphdef, parameters, config) for the UNet, the text encoder or the VAE
decoder. Jitted functions take its parameters as arguments and rebuild the module inside the trace
(``model.module(params)``), so no jitted program closes over 1.4 B constants and none holds the
object that owns it. ``vinf_jax.checkpoint`` only stores and reads trees and dicts; modules are
built here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vinf_jax import checkpoint
from vinf_jax.errors import CheckpointError, ConfigError, VinfError
from vinf_jax.models.clip_text import CLIPTextConfig, CLIPTextModel
from vinf_jax.models.unet3d import UNet3D, UNetConfig
from vinf_jax.models.vae import VAEConfig, VAEDecoder

# kind -> (config class, module class); the kinds are the checkpoint's component folder names
KINDS = {"unet": (UNetConfig, UNet3D), "text_encoder": (CLIPTextConfig, CLIPTextModel), "vae": (VAEConfig, VAEDecoder)}


@contextlib.contextmanager
def no_tracer_provenance():
    """Skip jax's tracer-provenance text while building abstract modules.

    flax probes ``getattr(tracer, "sharding", None)`` for every parameter under ``nnx.eval_shape``;
    for each probe jax builds an AttributeError message describing the tracer's origin, which grows
    with the trace (quadratic overall) and is then thrown away by getattr. For the full UNet that is
    30-70 s of string building instead of ~2 s. Only the text of swallowed errors changes; on another
    jax layout this does nothing.
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


@functools.lru_cache(maxsize=16)
def _abstract(kind: str, config) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, abstract parameter state) of the ``kind`` module built from ``config``; allocates nothing.
    Cached: a checkpoint load, a conversion and a pipeline of the same config trace it once."""
    _, module_cls = KINDS[kind]
    with no_tracer_provenance():
        module = nnx.eval_shape(lambda: module_cls(config, rngs=nnx.Rngs(0)))
    return nnx.split(module)


def abstract_params(kind: str, config) -> dict:
    """Pure dict of ShapeDtypeStructs: the parameter tree of the ``kind`` module of ``config``."""
    return nnx.to_pure_dict(_abstract(kind, config)[1])


def config_from_dict(kind: str, raw: dict, *, where: str = ""):
    """The config object of ``kind`` from its stored dict; a CheckpointError naming ``where`` if invalid."""
    cfg_cls, _ = KINDS[kind]
    try:
        return cfg_cls.from_dict(raw)
    except (VinfError, TypeError, ValueError) as e:
        raise CheckpointError(f"{kind}: {where or 'config'} is not a valid config: {e}") from None


class Model:
    """A module as (graphdef, params, config): ``model.module(params)`` rebuilds it inside a trace,
    and ``model.apply(params, *args)`` calls it. ``params`` is a nested pure dict of arrays."""

    def __init__(self, kind: str, config, params: dict | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(KINDS)}")
        self.kind, self.config, self.params = kind, config, params
        self.graphdef, self._state = _abstract(kind, config)

    @property
    def abstract(self) -> dict:
        """Pure dict of the parameters' ShapeDtypeStructs."""
        return nnx.to_pure_dict(self._state)

    def module(self, params=None):
        """The NNX module holding ``params`` (default: this model's own)."""
        state = jax.tree.map(lambda x: x, self._state)
        nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, self.params if params is None else params))
        return nnx.merge(self.graphdef, state)

    def apply(self, params, *args, **kwargs):
        return self.module(params)(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """Everything a converted folder holds, as models. Components absent from a UNet-only checkpoint are None."""

    path: Path
    components: tuple[str, ...]
    unet: Model
    text_encoder: Model | None
    vae: Model | None
    tokenizer: Any | None  # transformers.CLIPTokenizer
    scheduler_config: dict | None  # diffusers scheduler_config.json, verbatim
    info: dict  # the marker: format, components, source, versions


def _load_tokenizer(folder: Path):
    """The checkpoint's tokenizer: transformers' CLIPTokenizer, or (LVDM checkpoints, whose
    tokenizer_config.json names it) our OpenCLIP tokenizer, which gives open_clip's ids."""
    from transformers import CLIPTokenizer

    from vinf_jax.tokenizers import openclip

    try:
        config = folder / openclip.CONFIG_NAME
        if config.is_file() and checkpoint.read_json(config, "tokenizer").get("tokenizer_class") == openclip.CLASS_NAME:
            return openclip.OpenCLIPTokenizer.from_folder(folder)
        return CLIPTokenizer.from_pretrained(str(folder))
    except CheckpointError:
        raise
    except Exception as e:  # transformers raises OSError, ValueError, TypeError... for bad files
        raise CheckpointError(f"tokenizer: cannot load {folder}: {type(e).__name__}: {e}") from None


def load_checkpoint(path: str | Path, *, verify: bool = True) -> LoadedCheckpoint:
    """Read the checkpoint folder ``path`` written by the converter, as models.

    Raises :class:`CheckpointError` naming the file or folder when the marker, a component, a config
    or a parameter file is missing or damaged, or the parameters do not fit their config.
    ``verify=False`` skips the SHA-256 check of the parameter files (a few seconds at full size).
    """
    stored = checkpoint.open_checkpoint(path, verify=verify)  # every cheap check before any trace
    configs = {kind: config_from_dict(kind, raw, where=str(stored.path / kind / "config.json"))
               for kind, raw in stored.configs.items()}
    tokenizer = _load_tokenizer(stored.path / "tokenizer") if "tokenizer" in stored.components else None
    models = {}
    for kind in ("text_encoder", "vae", "unet"):  # the UNet, slowest to trace, last
        if kind in configs:
            model = Model(kind, configs[kind])
            model.params = stored.load_params(kind, model.abstract)
            models[kind] = model
    return LoadedCheckpoint(path=stored.path, components=stored.components, unet=models["unet"],
                            text_encoder=models.get("text_encoder"), vae=models.get("vae"), tokenizer=tokenizer,
                            scheduler_config=stored.scheduler_config, info=stored.info)


def read_unet(folder: str | Path) -> Model:
    """The UNet of ``folder`` (a checkpoint root holding ``unet/``, or that folder itself)."""
    folder = Path(folder)
    if (folder / "unet").is_dir():
        folder = folder / "unet"
    if not folder.is_dir():
        raise CheckpointError(f"unet: checkpoint folder {folder} does not exist")
    cfg = config_from_dict("unet", checkpoint.read_json(folder / "config.json", "unet"),
                           where=str(folder / "config.json"))
    model = Model("unet", cfg)
    model.params = checkpoint.load_params(folder, model.abstract, "unet")
    return model


def _unet_diffusers_layout(model: Model, params, sample, timestep, context, fps, guidance=None, motion=None):
    x = jnp.transpose(sample, (0, 2, 3, 4, 1))
    out = model.apply(params, x, timestep, context, fps, guidance=guidance, motion=motion)
    return jnp.transpose(out, (0, 4, 1, 2, 3)).astype(jnp.float32)


def check_turbo_inputs(config: UNetConfig, guidance, motion) -> None:
    """A ConfigError if the UNet of ``config`` cannot take the T2V-Turbo inputs given (method §12.1)."""
    if guidance is not None and config.time_cond_proj_dim is None:
        raise ConfigError("guidance: this UNet has no guidance embedding (not a T2V-Turbo UNet); "
                          "apply classifier-free guidance to two calls instead")
    if motion is not None and config.motion_cond_proj_dim is None:
        raise ConfigError("motion: this UNet has no motion embedding (T2V-Turbo v1 or v2 without motion "
                          "guidance); pass motion=None")
    if motion is not None and guidance is None:
        raise ConfigError("motion: needs guidance as well (T2V-Turbo combines the two embeddings)")


class UNetFunction:
    """``unet(sample, timestep, encoder_hidden_states, fps=24, guidance=None, motion=None)`` in diffusers'
    layout, jitted.

    sample (batch, channels, frames, height, width) -> noise prediction of the same shape. One clip,
    vanilla temporal layers (the Video-Infinity version is ``VideoInfinityPipeline.predict_noise``).
    ``guidance`` (T2V-Turbo UNets): the guidance scale w the UNet embeds; ``motion``: the motion-guidance
    scale, or None for no motion input. Scalars or one value per batch row.
    """

    def __init__(self, model: Model, dtype="auto"):
        from vinf_jax.config import compute_dtype

        self.model = model
        self.dtype = jnp.dtype(compute_dtype(dtype, jax.devices()[0].platform))
        self.params = jax.tree.map(lambda a: jnp.asarray(a, self.dtype), model.params)
        self._run = jax.jit(functools.partial(_unet_diffusers_layout, model))  # holds the model, not self

    @property
    def config(self) -> UNetConfig:
        return self.model.config

    def __call__(self, sample, timestep, encoder_hidden_states, fps=24, guidance=None, motion=None):
        b = np.shape(sample)[0]
        rows = lambda v: None if v is None else jnp.broadcast_to(jnp.asarray(v, jnp.float32), (b,))
        check_turbo_inputs(self.config, guidance, motion)
        return self._run(self.params, jnp.asarray(sample, self.dtype), rows(timestep),
                         jnp.asarray(encoder_hidden_states, self.dtype), rows(fps), rows(guidance), rows(motion))


def load_unet(path: str | Path, dtype="auto") -> UNetFunction:
    """The converted UNet at ``path`` as a jitted callable in diffusers' layout. ``dtype`` takes the
    names of the config's ``dtype`` key and numpy/jax dtypes (``vinf_jax.config.dtypes``)."""
    return UNetFunction(read_unet(path), dtype)
