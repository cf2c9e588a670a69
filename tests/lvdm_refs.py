"""A tiny VideoCrafter checkpoint in LVDM layout, made from reference models, for the LVDM converter tests.

The three models are the public reference implementations at toy sizes with every parameter random:
diffusers' ``UNet3DConditionModel`` (+ the port's fps embedding), open_clip's ``TextTransformer`` and
diffusers' ``AutoencoderKL``. Their state dicts are renamed to VideoCrafter's keys by the tables
below, written here from VideoCrafter's module structure independently of ``convert/lvdm.py``; the
VAE table is checked against diffusers' own LDM->diffusers conversion. Schedule buffers are
computed as LatentDiffusion registers them. Channel counts are multiples of 32 because VideoCrafter
normalises with GroupNorm(32) everywhere.
"""

from __future__ import annotations

import numpy as np
import torch

import openclip_ref
from unet_refs import FpsUNet, randomize_

UNET = dict(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32, attention_head_dim=8,
            cross_attention_dim=32, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))
TEXT = dict(width=32, heads=4, layers=3, context_length=77, vocab_size=49408)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
           down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
           layers_per_block=1, norm_num_groups=32, sample_size=32, scaling_factor=0.18215)
SCHEDULE = dict(timesteps=1000, linear_start=0.00085, linear_end=0.012, use_scale=True, scale_b=0.7)

YAML = {"model": {"target": "lvdm.models.ddpm3d.LatentDiffusion", "params": {
    **SCHEDULE, "scale_factor": 0.18215, "first_stage_key": "video", "cond_stage_key": "caption",
    "unet_config": {"target": "lvdm.modules.networks.openaimodel3d.UNetModel", "params": {
        "in_channels": 4, "out_channels": 4, "model_channels": 32, "attention_resolutions": [1],
        "num_res_blocks": 1, "channel_mult": [1, 2], "num_head_channels": 8, "transformer_depth": 1,
        "context_dim": 32, "use_linear": True, "use_checkpoint": True, "temporal_conv": True,
        "temporal_attention": True, "temporal_selfatt_only": True, "use_relative_position": False,
        "use_causal_attention": False, "temporal_length": 16, "addition_attention": True, "fps_cond": True}},
    "first_stage_config": {"target": "lvdm.models.autoencoder.AutoencoderKL", "params": {
        "embed_dim": 4, "ddconfig": {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3,
                                     "out_ch": 3, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1,
                                     "attn_resolutions": [], "dropout": 0.0}}},
    "cond_stage_config": {"target": "lvdm.modules.encoders.condition.FrozenOpenCLIPEmbedder",
                          "text_cfg": TEXT, "params": {"freeze": True, "layer": "penultimate"}},
}}}


# ---------------------------------------------------------------------------------------- UNet


def tiny_unet(seed: int = 0) -> FpsUNet:
    from diffusers import UNet3DConditionModel

    torch.manual_seed(seed)
    model = FpsUNet(UNet3DConditionModel(**UNET))
    randomize_(model.unet, seed=seed)
    return model.eval()


def unet_table(unet) -> dict[str, str]:
    """diffusers module prefix -> openaimodel3d module prefix, walking the diffusers module's blocks."""
    t = {"conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.",
         "time_embedding.linear_2.": "time_embed.2.", "fps_embedding.linear_1.": "fps_embedding.0.",
         "fps_embedding.linear_2.": "fps_embedding.2.", "transformer_in.": "init_attn.0.",
         "conv_norm_out.": "out.0.", "conv_out.": "out.2."}

    def layer(src, dst, block, j):
        t[f"{src}.resnets.{j}."] = f"{dst}.0."
        t[f"{src}.temp_convs.{j}."] = f"{dst}.0.temopral_conv."
        if getattr(block, "attentions", None) is not None and j < len(block.attentions):
            t[f"{src}.attentions.{j}."] = f"{dst}.1."
            t[f"{src}.temp_attentions.{j}."] = f"{dst}.2."

    n = 1
    for b, block in enumerate(unet.down_blocks):
        for j in range(len(block.resnets)):
            layer(f"down_blocks.{b}", f"input_blocks.{n}", block, j)
            n += 1
        if block.downsamplers is not None:
            t[f"down_blocks.{b}.downsamplers.0.conv."] = f"input_blocks.{n}.0.op."
            n += 1
    t.update({"mid_block.resnets.0.": "middle_block.0.", "mid_block.temp_convs.0.": "middle_block.0.temopral_conv.",
              "mid_block.attentions.0.": "middle_block.1.", "mid_block.temp_attentions.0.": "middle_block.2.",
              "mid_block.resnets.1.": "middle_block.3.", "mid_block.temp_convs.1.": "middle_block.3.temopral_conv."})
    n = 0
    for b, block in enumerate(unet.up_blocks):
        for j in range(len(block.resnets)):
            layer(f"up_blocks.{b}", f"output_blocks.{n}", block, j)
            n += 1
        if block.upsamplers is not None:
            has_attn = getattr(block, "attentions", None) is not None
            t[f"up_blocks.{b}.upsamplers.0.conv."] = f"output_blocks.{n - 1}.{3 if has_attn else 1}.conv."
    return t


RESBLOCK = {"norm1.": "in_layers.0.", "conv1.": "in_layers.2.", "time_emb_proj.": "emb_layers.1.",
            "norm2.": "out_layers.0.", "conv2.": "out_layers.3.", "conv_shortcut.": "skip_connection."}


def unet_to_lvdm(model: FpsUNet, use_linear: bool = True) -> dict[str, torch.Tensor]:
    """``model.diffusion_model.*`` tensors; projections of the temporal transformers as VideoCrafter
    stores them: ``init_attn`` always a 1x1 Conv1d, the others Linear with ``use_linear`` (else
    Conv1d), spatial ones Linear with ``use_linear`` (else a 1x1 Conv2d)."""
    table = unet_table(model.unet)
    out = {}
    for key, value in model.unet.state_dict().items():
        prefix = max((p for p in table if key.startswith(p)), key=len)
        rest = key[len(prefix):]
        if ".resnets." in prefix:
            rest = next((RESBLOCK[r] + rest[len(r):] for r in RESBLOCK if rest.startswith(r)), rest)
        name = table[prefix] + rest
        if rest.startswith(("proj_in.weight", "proj_out.weight")):
            temporal = "temp_attentions" in prefix or prefix == "transformer_in."
            if prefix == "transformer_in." or (temporal and not use_linear):
                value = value[..., None]
            elif not use_linear:
                value = value[..., None, None]
        out["model.diffusion_model." + name] = value.detach().clone()
    return out


# ---------------------------------------------------------------------------------------- text


def tiny_text(seed: int = 0):
    """A random open_clip TextTransformer (VideoCrafter's pin, 2.22.0) of TEXT's sizes."""
    tm = openclip_ref.transformer_module()
    torch.manual_seed(seed)
    model = tm.TextTransformer(context_length=TEXT["context_length"], vocab_size=TEXT["vocab_size"],
                               width=TEXT["width"], heads=TEXT["heads"], layers=TEXT["layers"], output_dim=16)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.1
            p.copy_(noise + 1.0 if name.endswith(("ln_1.weight", "ln_2.weight", "ln_final.weight")) else noise)
    return model.eval()


@torch.no_grad()
def penultimate(model, ids: torch.Tensor) -> np.ndarray:
    """FrozenOpenCLIPEmbedder(layer="penultimate").encode_with_transformer, transcribed."""
    x = model.token_embedding(ids) + model.positional_embedding
    x = x.permute(1, 0, 2)
    blocks = model.transformer.resblocks
    for r in list(blocks)[: len(blocks) - 1]:
        x = r(x, attn_mask=model.attn_mask)
    return model.ln_final(x.permute(1, 0, 2)).numpy()


def text_to_lvdm(model) -> dict[str, torch.Tensor]:
    sd = {f"cond_stage_model.model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    sd["cond_stage_model.model.logit_scale"] = torch.tensor(4.6052)  # the CLIP model's, unused
    return sd


# ---------------------------------------------------------------------------------------- VAE


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    from torch_refs import randomize_ as randomize_normal

    return randomize_normal(AutoencoderKL(**VAE), 0.05, seed)


def vae_to_lvdm(vae) -> dict[str, torch.Tensor]:
    """``first_stage_model.*``: diffusers AutoencoderKL keys -> LDM's (attention as 1x1 convs)."""
    n = len(vae.config.block_out_channels)
    table = {"conv_norm_out.": "norm_out.", "mid_block.resnets.0.": "mid.block_1.", "mid_block.resnets.1.": "mid.block_2.",
             "mid_block.attentions.0.group_norm.": "mid.attn_1.norm.", "mid_block.attentions.0.to_q.": "mid.attn_1.q.",
             "mid_block.attentions.0.to_k.": "mid.attn_1.k.", "mid_block.attentions.0.to_v.": "mid.attn_1.v.",
             "mid_block.attentions.0.to_out.0.": "mid.attn_1.proj_out."}
    for i in range(n):
        table[f"down_blocks.{i}.resnets."] = f"down.{i}.block."
        table[f"down_blocks.{i}.downsamplers.0."] = f"down.{i}.downsample."
        table[f"up_blocks.{i}.resnets."] = f"up.{n - 1 - i}.block."
        table[f"up_blocks.{i}.upsamplers.0."] = f"up.{n - 1 - i}.upsample."
    out = {}
    for key, value in vae.state_dict().items():
        part, _, rest = key.partition(".")
        if part in ("encoder", "decoder"):
            prefix = max((p for p in table if rest.startswith(p)), key=len, default="")
            rest = table.get(prefix, "") + rest[len(prefix):]
            rest = rest.replace("conv_shortcut.", "nin_shortcut.")
            if ".attn_1." in rest and rest.endswith("weight") and value.ndim == 2:
                value = value[:, :, None, None]
            key = f"{part}.{rest}"
        out["first_stage_model." + key] = value.detach().clone()
    return out


# ---------------------------------------------------------------------------------------- buffers


def schedule_buffers(timesteps=1000, linear_start=0.00085, linear_end=0.012, use_scale=True, scale_b=0.7,
                     scale_a=1.0, mid_step=400) -> dict[str, torch.Tensor]:
    """LatentDiffusion.register_schedule's persistent buffers (+ scale_arr), float64 maths, float32 stored."""
    betas = np.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=np.float64) ** 2
    ac = np.cumprod(1.0 - betas)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    bufs = {"betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": np.sqrt(ac), "sqrt_one_minus_alphas_cumprod": np.sqrt(1 - ac),
            "log_one_minus_alphas_cumprod": np.log(1 - ac), "sqrt_recip_alphas_cumprod": np.sqrt(1 / ac),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1 / ac - 1), "posterior_variance": post_var,
            "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
            "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1 - ac),
            "posterior_mean_coef2": (1 - ac_prev) * np.sqrt(1 - betas) / (1 - ac)}
    if use_scale:
        bufs["scale_arr"] = np.concatenate([np.linspace(scale_a, scale_b, mid_step), np.full(timesteps, scale_b)])
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in bufs.items()}
