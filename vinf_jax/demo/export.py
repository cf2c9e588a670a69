"""Write trained Flax parameters as a diffusers text-to-video pipeline folder (safetensors).

The inverse of ``vinf_jax.convert.mapping``: every Flax leaf goes to the PyTorch key and layout a diffusers /
transformers checkpoint uses, so ``python -m convert.videocrafter2 --base FOLDER`` converts the
result exactly as it converts downloaded weights::

    unet/config.json  unet/diffusion_pytorch_model.safetensors      (VideoCrafter2 UNet, fps_cond)
    text_encoder/config.json  text_encoder/model.safetensors        (transformers CLIPTextModel)
    vae/config.json  vae/diffusion_pytorch_model.safetensors        (AutoencoderKL, encoder included)
    tokenizer/   scheduler/scheduler_config.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vinf_jax.output import jsonfile
from vinf_jax.convert.mapping import flatten_pure, torch_key


def to_torch_layout(leaf: str, value: np.ndarray) -> np.ndarray:
    """Flax layout -> PyTorch layout (inverse of ``vinf_jax.convert.mapping.to_flax_layout``)."""
    if leaf != "kernel":
        return value
    if value.ndim == 2:  # Linear (in, out) -> (out, in)
        return value.T
    if value.ndim >= 3:  # Conv (*k, in, out) -> (out, in, *k)
        n = value.ndim
        return np.transpose(value, (n - 1, n - 2) + tuple(range(n - 2)))
    return value


def torch_state_dict(params: dict, rename=None, prefix: str = "", dtype=np.float32) -> dict[str, np.ndarray]:
    out = {}
    for path, value in flatten_pure(params).items():
        leaf = path.rpartition(".")[2]
        key = prefix + torch_key(path, rename)
        out[key] = np.ascontiguousarray(to_torch_layout(leaf, np.asarray(value)).astype(dtype))
    return out


def write_component(folder: Path, config: dict, weights_name: str, tensors: dict) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    jsonfile.write_json(folder / "config.json", config, sort_keys=True)
    save_file(tensors, str(folder / weights_name), metadata={"format": "pt"})
