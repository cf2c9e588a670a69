"""PyTorch reference UNets for parity tests: diffusers' UNet3DConditionModel plus the fps
conditioning of the VideoCrafter2 port (``fps_proj`` -> ``fps_embedding``, added to the time
embedding after its second linear layer), with every parameter random."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import UNet3DConditionModel
from diffusers.models.embeddings import TimestepEmbedding, Timesteps

TINY_CONFIGS = {
    # all four block types, two layers per block
    "four_blocks": dict(block_out_channels=(16, 32, 32, 32), layers_per_block=2, norm_num_groups=8,
                        attention_head_dim=8, cross_attention_dim=12),
    # two blocks, one layer each, non-default padding of the downsampler and head size
    "two_blocks": dict(block_out_channels=(16, 24), layers_per_block=1, norm_num_groups=4,
                       attention_head_dim=4, cross_attention_dim=10,
                       down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                       up_block_types=("UpBlock3D", "CrossAttnUpBlock3D")),
}


def randomize_(module: torch.nn.Module, std: float = 0.2, seed: int = 0) -> None:
    """Every parameter random, including those diffusers zero-initialises (temporal conv4, proj_out)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
            elif p.ndim == 1:  # norm scales near one
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.1)
            else:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) * (std if fan_in < 4 else 1.0 / fan_in ** 0.5))


class FpsUNet(torch.nn.Module):
    """Wraps a UNet3DConditionModel and adds fps conditioning through a forward hook."""

    def __init__(self, unet: UNet3DConditionModel):
        super().__init__()
        self.unet = unet
        c0 = unet.config.block_out_channels[0]
        unet.fps_proj = Timesteps(c0, True, 0)
        unet.fps_embedding = TimestepEmbedding(c0, 4 * c0)
        self._fps = None
        unet.time_embedding.register_forward_hook(self._add_fps)

    def _add_fps(self, module, inputs, output):
        f = self.unet.fps_proj(self._fps.expand(output.shape[0]).float()).to(output.dtype)
        return output + self.unet.fps_embedding(f)

    def forward(self, sample, timestep, context, fps=24):
        self._fps = torch.as_tensor(fps).reshape(-1)
        return self.unet(sample, timestep, context).sample


def tiny_unet(name: str = "four_blocks", seed: int = 0) -> FpsUNet:
    torch.manual_seed(seed)
    unet = UNet3DConditionModel(**TINY_CONFIGS[name])
    model = FpsUNet(unet)
    randomize_(unet, seed=seed)
    return model.eval()


def save_tiny_unet(model: FpsUNet, folder: Path, **save_kw) -> Path:
    model.unet.save_pretrained(folder, **save_kw)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["fps_cond"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def torch_unet_out(model: FpsUNet, sample, t, context, fps) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(sample), torch.as_tensor(t), torch.from_numpy(context),
                     torch.as_tensor(fps, dtype=torch.float32)).numpy()
