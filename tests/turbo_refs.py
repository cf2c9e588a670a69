"""Tiny T2V-Turbo checkpoints in the published layouts, and T2V-Turbo's own formulas, for tests/test_turbo.py.

- ``Skeleton``: VideoCrafter's ``openaimodel3d.UNetModel`` module tree at lvdm_refs' toy size, written here
  from the structure of its ``__init__`` (and attention.py's transformer classes): the same attribute names
  in the same registration order, so ``named_modules()`` walks the modules in the order T2V-Turbo's LoRA
  file lists them. Only the parameterised leaves are real; no forward. A strict ``load_state_dict`` of
  lvdm_refs' UNet keys checks the names.
- ``collapse_lora``: their merge (``utils/lora.py: inject_trainable_lora_extended`` order + ``collapse_lora``),
  transcribed onto the skeleton.
- ``TurboUNet``: the forward reference: lvdm_refs' UNet (diffusers' UNet3DConditionModel + fps) with
  T2V-Turbo's conditioning added to the time embedding's input (``openaimodel3d.UNetModel.forward``):
  ``time_embed(t_emb + c)``, ``c = time_cond_proj(w_emb)`` or ``combine_proj([that, motion_cond_proj(m_emb)])``.
- ``get_w_embedding``, ``set_timesteps``, ``scheduler_step``: transcriptions of
  ``pipeline/t2v_turbo_vc2_pipeline.py`` and ``scheduler/t2v_turbo_scheduler.py`` (torch, float32).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

import lvdm_refs

PREFIX = "model.diffusion_model."
COND = 256  # time_cond_proj_dim / motion_cond_proj_dim of the published UNets


# ---------------------------------------------------------------------------------------- module tree


class CrossAttention(nn.Module):
    def __init__(self, query_dim, context_dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, context_dim):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)


class SpatialTransformer(nn.Module):
    def __init__(self, ch, heads, dim_head, context_dim):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(32, ch)
        self.proj_in = nn.Linear(ch, inner)  # use_linear
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, heads, dim_head, context_dim)])
        self.proj_out = nn.Linear(inner, ch)


class TemporalTransformer(nn.Module):
    def __init__(self, ch, heads, dim_head, use_linear):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(32, ch)
        self.proj_in = nn.Linear(ch, inner) if use_linear else nn.Conv1d(ch, inner, 1)
        # only_self_att: attn2 is self-attention too
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, heads, dim_head, inner)])
        self.proj_out = nn.Linear(inner, ch) if use_linear else nn.Conv1d(inner, ch, 1)


class TemporalConvBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        conv = lambda: nn.Conv3d(ch, ch, (3, 1, 1), padding=(1, 0, 0))
        self.conv1 = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), conv())
        self.conv2 = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), nn.Dropout(0.0), conv())
        self.conv3 = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), nn.Dropout(0.0), conv())
        self.conv4 = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), nn.Dropout(0.0), conv())


class ResBlock(nn.Module):
    def __init__(self, ch, emb, out):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), nn.Conv2d(ch, out, 3, padding=1))
        self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, out))
        self.out_layers = nn.Sequential(nn.GroupNorm(32, out), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out, out, 3, padding=1))
        self.skip_connection = nn.Identity() if out == ch else nn.Conv2d(ch, out, 1)
        self.temopral_conv = TemporalConvBlock(out)


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)


class Skeleton(nn.Module):
    """openaimodel3d.UNetModel of lvdm_refs.YAML's unet_config (+ T2V-Turbo's projections)."""

    def __init__(self, time_cond: bool = False, motion_cond: bool = False):
        super().__init__()
        p = lvdm_refs.YAML["model"]["params"]["unet_config"]["params"]
        mc, nrb, mult, dh = p["model_channels"], p["num_res_blocks"], p["channel_mult"], p["num_head_channels"]
        ctx, attn = p["context_dim"], set(p["attention_resolutions"])
        emb = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.fps_embedding = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        if time_cond:
            self.time_cond_proj = nn.Linear(COND, mc, bias=False)
        if motion_cond:
            self.motion_cond_proj = nn.Linear(COND, mc, bias=False)
            self.combine_proj = nn.Linear(2 * mc, mc, bias=False)
        self.input_blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(4, mc, 3, padding=1))])
        self.init_attn = nn.Sequential(TemporalTransformer(mc, 8, dh, use_linear=False))
        chans, ch, ds = [mc], mc, 1
        for level, m in enumerate(mult):
            for _ in range(nrb):
                layers = [ResBlock(ch, emb, m * mc)]
                ch = m * mc
                if ds in attn:
                    layers += [SpatialTransformer(ch, ch // dh, dh, ctx), TemporalTransformer(ch, ch // dh, dh, True)]
                self.input_blocks.append(nn.Sequential(*layers))
                chans.append(ch)
            if level != len(mult) - 1:
                self.input_blocks.append(nn.Sequential(Downsample(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = nn.Sequential(ResBlock(ch, emb, ch), SpatialTransformer(ch, ch // dh, dh, ctx),
                                          TemporalTransformer(ch, ch // dh, dh, True), ResBlock(ch, emb, ch))
        self.output_blocks = nn.ModuleList()
        for level, m in list(enumerate(mult))[::-1]:
            for i in range(nrb + 1):
                layers = [ResBlock(ch + chans.pop(), emb, m * mc)]
                ch = m * mc
                if ds in attn:
                    layers += [SpatialTransformer(ch, ch // dh, dh, ctx), TemporalTransformer(ch, ch // dh, dh, True)]
                if level and i == nrb:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(nn.Sequential(*layers))
        self.out = nn.Sequential(nn.GroupNorm(32, mc), nn.SiLU(), nn.Conv2d(mc, 4, 3, padding=1))


def lora_modules(model: nn.Module):
    """What their injector replaces, in order: every Linear / Conv2d / Conv3d of ``named_modules()``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d))]


def random_lora(model: nn.Module, rank: int = 64, seed: int = 0) -> list[torch.Tensor]:
    """[up, down, ...] as save_lora_weight writes it: rank clipped to min(in, out), up 1x1(x1)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _, m in lora_modules(model):
        w = m.weight
        r = min(rank, w.shape[0], w.shape[1])
        out.append(torch.randn((w.shape[0], r) + (1,) * (w.ndim - 2), generator=g) * 0.02)
        out.append(torch.randn((r, w.shape[1]) + tuple(w.shape[2:]), generator=g) * 0.02)
    return out


@torch.no_grad()
def collapse_lora(model: nn.Module, loras: list[torch.Tensor]) -> None:
    """Their merge: pop (up, down) per module in order; W += (up.flatten(1) @ down.flatten(1)).reshape(W)."""
    loras = list(loras)
    for _, m in lora_modules(model):
        up, down = loras.pop(0), loras.pop(0)
        m.weight += (up.flatten(start_dim=1) @ down.flatten(start_dim=1)).reshape(m.weight.shape)
    assert not loras


# ---------------------------------------------------------------------------------------- forward


def get_w_embedding(w: torch.Tensor, embedding_dim: int = COND, dtype=torch.float32) -> torch.Tensor:
    """T2VTurboVC2Pipeline.get_w_embedding, transcribed."""
    w = w * 1000.0
    half_dim = embedding_dim // 2
    emb = torch.log(torch.tensor(10000.0)) / (half_dim - 1)
    emb = torch.exp(torch.arange(half_dim, dtype=dtype) * -emb)
    emb = w.to(dtype)[:, None] * emb[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    if embedding_dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class TurboUNet(nn.Module):
    """lvdm_refs' UNet with T2V-Turbo's conditioning added to the time embedding's input."""

    def __init__(self, seed: int = 1, motion: bool = True):
        super().__init__()
        self.base = lvdm_refs.tiny_unet(seed)
        mc = self.base.unet.config.block_out_channels[0]
        g = torch.Generator().manual_seed(seed + 100)
        self.time_cond_proj = nn.Linear(COND, mc, bias=False)
        self.time_cond_proj.weight.data = torch.randn(mc, COND, generator=g) / COND ** 0.5
        if motion:
            self.motion_cond_proj = nn.Linear(COND, mc, bias=False)
            self.combine_proj = nn.Linear(2 * mc, mc, bias=False)
            self.motion_cond_proj.weight.data = torch.randn(mc, COND, generator=g) / COND ** 0.5
            self.combine_proj.weight.data = torch.randn(mc, 2 * mc, generator=g) / (2 * mc) ** 0.5
        self._c = None
        self.base.unet.time_embedding.register_forward_pre_hook(lambda mod, args: (args[0] + self._c,) + args[1:])

    def forward(self, sample, t, ctx, fps, w, m=None):
        """openaimodel3d.UNetModel.forward's conditioning: timestep_cond = w_emb, motion_cond = m_emb or None."""
        c = self.time_cond_proj(get_w_embedding(w))
        if m is not None:
            c = self.combine_proj(torch.cat([c, self.motion_cond_proj(get_w_embedding(m))], dim=1))
        self._c = c
        return self.base(sample, t, ctx, fps)

    def state_dict_lvdm(self) -> dict[str, torch.Tensor]:
        """What T2V-Turbo-v2 saves: ``UNetModel.state_dict()``, no ``model.diffusion_model.`` prefix."""
        sd = {k[len(PREFIX):]: v for k, v in lvdm_refs.unet_to_lvdm(self.base).items()}
        for name in ("time_cond_proj", "motion_cond_proj", "combine_proj"):
            if hasattr(self, name):
                sd[f"{name}.weight"] = getattr(self, name).weight.detach().clone()
        return sd

    @torch.no_grad()
    def eps(self, sample, t, ctx, fps, w, m=None) -> np.ndarray:
        b = sample.shape[0]
        rows = lambda v: torch.as_tensor(np.broadcast_to(np.asarray(v, np.float32), (b,)).copy())
        return self.forward(torch.tensor(sample), torch.as_tensor(t), torch.tensor(ctx),
                            torch.as_tensor(fps, dtype=torch.float32), rows(w),
                            None if m is None else rows(m)).numpy()


# ---------------------------------------------------------------------------------------- sampler


def set_timesteps(num_inference_steps: int, lcm_origin_steps: int, num_train_timesteps: int = 1000) -> np.ndarray:
    """T2VTurboScheduler.set_timesteps, transcribed."""
    c = num_train_timesteps // lcm_origin_steps
    lcm_origin_timesteps = np.asarray(list(range(1, lcm_origin_steps + 1))) * c - 1
    skipping_step = len(lcm_origin_timesteps) // num_inference_steps
    return lcm_origin_timesteps[::-skipping_step][:num_inference_steps]


def alphas_cumprod(linear_start=0.00085, linear_end=0.012, n=1000) -> torch.Tensor:
    """T2VTurboScheduler's scaled_linear schedule (torch float32)."""
    betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, n, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def scheduler_step(eps, timesteps, i, sample, noise=None):
    """T2VTurboScheduler.step (epsilon): (prev_sample, denoised) in torch float32; ``noise`` for steps > 1."""
    ac = alphas_cumprod()
    t = int(timesteps[i])
    prev_t = int(timesteps[i + 1]) if i + 1 < len(timesteps) else t
    a_t, a_prev = ac[t], ac[prev_t]
    scaled = torch.tensor(t) / 0.1
    c_skip = 0.25 / (scaled ** 2 + 0.25)
    c_out = scaled / (scaled ** 2 + 0.25) ** 0.5
    pred_x0 = (sample - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    denoised = c_out * pred_x0 + c_skip * sample
    prev = a_prev.sqrt() * denoised + (1 - a_prev).sqrt() * noise if len(timesteps) > 1 else denoised
    return prev, denoised


def motion_for(t: int, motion_gs: float, percentage: float, num_train: int = 1000) -> float:
    """The pipeline's rule: zero once ``t < T·(1 − percentage)``, with their t a torch int64 element (so the
    comparison runs in float32), else motion_gs."""
    return 0.0 if bool(torch.tensor(t) < num_train * (1 - percentage)) else motion_gs


def v1_time_cond_proj(out_features: int, seed: int) -> torch.Tensor:
    """nn.Linear's reset_parameters on time_cond_proj (kaiming_uniform_(a=sqrt(5))) from a seeded generator."""
    w = torch.empty(out_features, COND)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=torch.Generator().manual_seed(seed))
    return w
