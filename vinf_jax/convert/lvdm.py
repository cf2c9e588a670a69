"""VideoCrafter's own checkpoint (LVDM layout, the released ``model.ckpt``) -> our UNet, text encoder, VAE.

    python -m convert.videocrafter2 --lvdm model.ckpt [--lvdm-config inference.yaml] --out OUT

The file holds one state dict (``{'state_dict': ...}`` or bare) with three models and the
schedule buffers of VideoCrafter's ``LatentDiffusion``:

- ``model.diffusion_model.*``: ``openaimodel3d.UNetModel``. Every name is derived here from the
  UNet config (the index arithmetic of ``input_blocks`` / ``output_blocks``), so a tiny config maps
  with the same code as VideoCrafter2's (1,484 tensors, 1,413,284,420 parameters).
- ``cond_stage_model.model.*``: the OpenCLIP text transformer. VideoCrafter2 reads it at the
  **penultimate** block and then applies ``ln_final``, so our encoder gets one block fewer and the
  stored last block, ``text_projection`` and ``logit_scale`` are not used.
- ``first_stage_model.*``: the LDM ``AutoencoderKL``; only ``post_quant_conv`` and the decoder are
  needed (the encoder and ``quant_conv`` only encode images).
- ``betas``, ``alphas_cumprod``, ..., ``scale_arr``: the noise schedule. ``alphas_cumprod`` and
  ``scale_arr`` are checked against the schedule the yaml describes; the others are functions of
  ``betas`` and are not needed.

Sizes and options come from VideoCrafter's inference yaml (``model.params``), or without one from
VideoCrafter2's (``VIDEOCRAFTER2`` below). Everything is numpy: torch is only needed to unpickle a
``.ckpt`` (with ``torch.load(weights_only=True)``, which executes no code).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from vinf_jax.convert.mapping import flatten_pure, params_from_torch, torch_key
from vinf_jax.errors import ConversionError

UNET_PREFIX = "model.diffusion_model."
TEXT_PREFIX = "cond_stage_model.model."
VAE_PREFIX = "first_stage_model."
# LatentDiffusion's persistent buffers: the DDPM schedule (all derived from betas) and use_scale's scale_arr
SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "scale_arr", "logvar", "scale_factor",
)

# VideoCrafter2's configs/inference_t2v_512_v2.0.yaml, model.params (the values used without --lvdm-config)
VIDEOCRAFTER2: dict[str, Any] = {
    "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "scale_factor": 0.18215,
    "use_scale": True, "scale_b": 0.7,
    "unet_config": {"params": {
        "in_channels": 4, "out_channels": 4, "model_channels": 320, "attention_resolutions": [4, 2, 1],
        "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_head_channels": 64, "transformer_depth": 1,
        "context_dim": 1024, "use_linear": True, "temporal_conv": True, "temporal_attention": True,
        "temporal_selfatt_only": True, "use_relative_position": False, "use_causal_attention": False,
        "temporal_length": 16, "addition_attention": True, "fps_cond": True}},
    "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
        "double_z": True, "z_channels": 4, "resolution": 512, "in_channels": 3, "out_ch": 3, "ch": 128,
        "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}}},
    "cond_stage_config": {"target": "lvdm.modules.encoders.condition.FrozenOpenCLIPEmbedder",
                          "params": {"freeze": True, "layer": "penultimate"}},
}
# open_clip's text towers by architecture name (what FrozenOpenCLIPEmbedder's `arch` selects)
OPENCLIP_TEXT = {
    "ViT-H-14": dict(width=1024, heads=16, layers=24),
    "ViT-L-14": dict(width=768, heads=12, layers=12),
    "ViT-bigG-14": dict(width=1280, heads=20, layers=32),
}
# openaimodel3d.UNetModel's defaults for keys a yaml may leave out
_UNET_DEFAULTS = dict(channel_mult=(1, 2, 4, 8), conv_resample=True, dims=2, use_scale_shift_norm=False,
                      resblock_updown=False, num_heads=-1, num_head_channels=-1, transformer_depth=1,
                      use_linear=False, temporal_conv=False, tempspatial_aware=False, temporal_attention=True,
                      temporal_selfatt_only=True, use_relative_position=True, use_causal_attention=False,
                      addition_attention=False, use_image_attention=False, temporal_transformer_depth=1,
                      fps_cond=False)
# what our UNet computes; any other value is a different network
_UNET_REQUIRED = dict(conv_resample=True, dims=2, use_scale_shift_norm=False, resblock_updown=False,
                      transformer_depth=1, temporal_transformer_depth=1, temporal_conv=True, tempspatial_aware=False,
                      temporal_attention=True, temporal_selfatt_only=True, use_relative_position=False,
                      use_causal_attention=False, addition_attention=True, use_image_attention=False)
_GROUPS = 32  # openaimodel3d / ae_modules normalise with GroupNorm(32, C) everywhere


@dataclasses.dataclass(frozen=True)
class LVDMModel:
    """What the yaml (or VideoCrafter2's defaults) says about the three models and the schedule."""

    unet: Any  # UNetConfig
    text: Any  # CLIPTextConfig of the converted encoder (penultimate: one block fewer than stored)
    text_layers: int  # blocks stored in the checkpoint
    vae: Any  # VAEConfig
    schedule: dict  # VideoCrafter's LatentDiffusion schedule options (see sampling/videocrafter.py)
    source: str  # the yaml, or "VideoCrafter2 defaults"
    unet_params: dict = dataclasses.field(default_factory=dict)  # the yaml's unet_config.params, with defaults


# ------------------------------------------------------------------------------------ config


def read_yaml(path: str | Path) -> dict:
    """``model.params`` of a VideoCrafter inference yaml."""
    try:
        import yaml
    except ImportError:
        raise ConversionError("--lvdm-config needs pyyaml: pip install pyyaml (or pip install 'vinf-jax[lvdm]')") from None
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConversionError(f"--lvdm-config: {path} does not exist") from None
    except (OSError, yaml.YAMLError) as e:
        raise ConversionError(f"--lvdm-config: {path} is not valid YAML: {e}") from None
    params = (data or {}).get("model", {}).get("params") if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise ConversionError(f"--lvdm-config: {path} has no model.params mapping (not a VideoCrafter inference yaml)")
    return params


def _get(d: Mapping, key: str, default, where: str):
    v = d.get(key, default) if isinstance(d, Mapping) else default
    if v is None and default is not None:
        raise ConversionError(f"{where}.{key} is required")
    return v


def _unet_config(params: Mapping, where: str):
    from vinf_jax.models.unet3d import UNetConfig

    p = {**_UNET_DEFAULTS, **(params or {})}
    bad = [f"{k}={p[k]!r} (need {v!r})" for k, v in _UNET_REQUIRED.items() if p[k] != v]
    if p["num_head_channels"] is None or p["num_head_channels"] <= 0:
        bad.append(f"num_head_channels={p['num_head_channels']!r} (need a head size > 0, as VideoCrafter2's 64)")
    for key in ("in_channels", "out_channels", "model_channels", "num_res_blocks", "attention_resolutions", "context_dim"):
        if p.get(key) is None:
            bad.append(f"{key} is missing")
    if bad:
        raise ConversionError(f"{where}: this UNet is not VideoCrafter2's architecture: " + "; ".join(bad))
    mult = tuple(int(m) for m in p["channel_mult"])
    attn = {int(a) for a in p["attention_resolutions"]}
    cross = [2 ** level in attn for level in range(len(mult))]
    return UNetConfig(
        in_channels=int(p["in_channels"]), out_channels=int(p["out_channels"]),
        down_block_types=tuple("CrossAttnDownBlock3D" if c else "DownBlock3D" for c in cross),
        up_block_types=tuple("CrossAttnUpBlock3D" if c else "UpBlock3D" for c in reversed(cross)),
        block_out_channels=tuple(int(p["model_channels"]) * m for m in mult),
        layers_per_block=int(p["num_res_blocks"]), norm_num_groups=_GROUPS, norm_eps=1e-5,
        cross_attention_dim=int(p["context_dim"]), attention_head_dim=int(p["num_head_channels"]),
        fps_cond=bool(p["fps_cond"]))


def _text_config(cond: Mapping, where: str):
    from vinf_jax.models.clip_text import CLIPTextConfig

    cond = cond or {}
    target = str(cond.get("target", "FrozenOpenCLIPEmbedder"))
    if not target.endswith("FrozenOpenCLIPEmbedder"):
        raise ConversionError(f"{where}.target={target!r}: only FrozenOpenCLIPEmbedder (OpenCLIP text) is supported")
    params = cond.get("params") or {}
    layer = params.get("layer", "last")
    if layer not in ("last", "penultimate"):
        raise ConversionError(f"{where}.params.layer={layer!r}: allowed 'last', 'penultimate'")
    arch = params.get("arch", "ViT-H-14")
    text_cfg = cond.get("text_cfg")
    if text_cfg is None:
        if arch not in OPENCLIP_TEXT:
            raise ConversionError(f"{where}.params.arch={arch!r} is unknown here; add open_clip's text_cfg "
                                  f"(width, heads, layers) to {where}")
        text_cfg = OPENCLIP_TEXT[arch]
    width, heads, layers = (int(text_cfg[k]) for k in ("width", "heads", "layers"))
    cfg = CLIPTextConfig(
        vocab_size=int(text_cfg.get("vocab_size", 49408)), hidden_size=width,
        intermediate_size=int(width * float(text_cfg.get("mlp_ratio", 4.0))),
        num_hidden_layers=layers - (1 if layer == "penultimate" else 0), num_attention_heads=heads,
        max_position_embeddings=int(text_cfg.get("context_length", params.get("max_length", 77))),
        hidden_act="quick_gelu" if cond.get("quick_gelu") else "gelu", layer_norm_eps=1e-5)
    return cfg, layers


def _vae_config(first: Mapping, scale_factor: float, where: str):
    from vinf_jax.models.vae import VAEConfig

    params = (first or {}).get("params") or {}
    dd = params.get("ddconfig") or {}
    missing = [k for k in ("ch", "ch_mult", "num_res_blocks", "z_channels", "out_ch") if k not in dd]
    if missing:
        raise ConversionError(f"{where}.params.ddconfig lacks {', '.join(missing)}")
    problems = []
    if list(dd.get("attn_resolutions") or []):
        problems.append(f"attn_resolutions={dd['attn_resolutions']!r} (attention in the up blocks is not ported; need [])")
    if params.get("embed_dim", dd["z_channels"]) != dd["z_channels"]:
        problems.append(f"embed_dim={params['embed_dim']} differs from z_channels={dd['z_channels']}")
    for key in ("tanh_out", "give_pre_end", "use_linear_attn"):
        if dd.get(key):
            problems.append(f"{key}=true")
    if dd.get("attn_type", "vanilla") != "vanilla":
        problems.append(f"attn_type={dd['attn_type']!r}")
    if problems:
        raise ConversionError(f"{where}: this autoencoder is not supported: " + "; ".join(problems))
    n = len(dd["ch_mult"])
    return VAEConfig(in_channels=int(dd.get("in_channels", 3)), out_channels=int(dd["out_ch"]),
                     latent_channels=int(dd["z_channels"]),
                     block_out_channels=tuple(int(dd["ch"]) * int(m) for m in dd["ch_mult"]),
                     up_block_types=("UpDecoderBlock2D",) * n, layers_per_block=int(dd["num_res_blocks"]),
                     norm_num_groups=_GROUPS, scaling_factor=float(scale_factor))


def _schedule(params: Mapping, where: str) -> dict:
    schedule = params.get("beta_schedule", "linear")
    if schedule not in ("linear", "sqrt_linear"):
        raise ConversionError(f"{where}.beta_schedule={schedule!r}: allowed 'linear', 'sqrt_linear'")
    if params.get("given_betas") is not None:
        raise ConversionError(f"{where}.given_betas is not supported")
    param = params.get("parameterization", "eps")
    if param not in ("eps", "x0"):
        raise ConversionError(f"{where}.parameterization={param!r}: allowed 'eps', 'x0'")
    return {"num_train_timesteps": int(params.get("timesteps", 1000)), "beta_schedule": schedule,
            "linear_start": float(params.get("linear_start", 1e-4)), "linear_end": float(params.get("linear_end", 2e-2)),
            "parameterization": param, "use_scale": bool(params.get("use_scale", False)),
            "scale_a": float(params.get("scale_a", 1.0)), "scale_b": float(params.get("scale_b", 0.3)),
            "mid_step": int(params.get("mid_step", 400)), "fix_scale_bug": bool(params.get("fix_scale_bug", False))}


def model_from_params(params: Mapping | None, source: str = "VideoCrafter2 defaults") -> LVDMModel:
    """The configs of the three models and the schedule from a yaml's ``model.params`` (None: VideoCrafter2)."""
    params = copy.deepcopy(dict(VIDEOCRAFTER2 if params is None else params))
    where = f"{source}: model.params"
    unet = _unet_config((params.get("unet_config") or {}).get("params"), f"{where}.unet_config.params")
    text, text_layers = _text_config(params.get("cond_stage_config"), f"{where}.cond_stage_config")
    vae = _vae_config(params.get("first_stage_config"), params.get("scale_factor", 1.0), f"{where}.first_stage_config")
    unet_params = {**_UNET_DEFAULTS, **((params.get("unet_config") or {}).get("params") or {})}
    return LVDMModel(unet, text, text_layers, vae, _schedule(params, where), source, unet_params)


# ------------------------------------------------------------------------------------ names


def _unet_namer(cfg) -> Callable[[str], str]:
    """diffusers UNet key (``unet_rename``d) -> openaimodel3d key, by VideoCrafter's index arithmetic.

    Down block b, layer l lives in ``input_blocks[1 + b*(L+1) + l]`` as (resnet, spatial transformer,
    temporal transformer) and its downsampler in ``input_blocks[1 + b*(L+1) + L].op``; up block b,
    layer l in ``output_blocks[b*(L+1) + l]``, whose last layer ends with the upsampler (after the two
    transformers where the block has them). The temporal conv sits inside the resnet as
    ``temopral_conv`` (VideoCrafter's spelling).
    """
    per = cfg.layers_per_block + 1
    up_cross = [t == "CrossAttnUpBlock3D" for t in cfg.up_block_types]
    resnet = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
              "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
    top = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
           "time_embedding.linear_2": "time_embed.2", "fps_embedding.linear_1": "fps_embedding.0",
           "fps_embedding.linear_2": "fps_embedding.2", "conv_norm_out": "out.0", "conv_out": "out.2",
           "transformer_in": "init_attn.0", "time_cond_proj": "time_cond_proj",
           "motion_cond_proj": "motion_cond_proj", "combine_proj": "combine_proj"}
    mid = {("resnets", 0): "0", ("temp_convs", 0): "0.temopral_conv", ("attentions", 0): "1",
           ("temp_attentions", 0): "2", ("resnets", 1): "3", ("temp_convs", 1): "3.temopral_conv"}
    layer_re = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.(resnets|temp_convs|attentions|temp_attentions)\.(\d+)\.(.+)$")

    def inside(kind: str, rest: str) -> str:
        if kind == "resnets":
            head, _, tail = rest.partition(".")
            return f"{resnet.get(head, head)}.{tail}"
        return rest

    def name(key: str) -> str:
        for ours, theirs in top.items():
            if key.startswith(ours + "."):
                return theirs + key[len(ours):]
        m = layer_re.match(key)
        if m:
            side, b, kind, l, rest = m[1], int(m[2]), m[3], int(m[4]), m[5]
            idx = (1 + b * per + l) if side == "down_blocks" else (b * per + l)
            blocks = "input_blocks" if side == "down_blocks" else "output_blocks"
            slot = {"resnets": "0", "temp_convs": "0.temopral_conv", "attentions": "1", "temp_attentions": "2"}[kind]
            return f"{blocks}.{idx}.{slot}.{inside(kind, rest)}"
        m = re.match(r"^mid_block\.(resnets|temp_convs|attentions|temp_attentions)\.(\d+)\.(.+)$", key)
        if m:
            return f"middle_block.{mid[(m[1], int(m[2]))]}.{inside(m[1], m[3])}"
        m = re.match(r"^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$", key)
        if m:
            return f"input_blocks.{1 + int(m[1]) * per + per - 1}.0.op.{m[2]}"
        m = re.match(r"^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$", key)
        if m:
            b = int(m[1])
            return f"output_blocks.{b * per + per - 1}.{3 if up_cross[b] else 1}.conv.{m[2]}"
        raise ConversionError(f"no LVDM name for UNet parameter {key}")  # a new module in our UNet

    return name


def unet_names(cfg) -> dict[str, str]:
    """{our flat parameter path: LVDM key (with ``model.diffusion_model.``)} for the UNet of ``cfg``."""
    from vinf_jax.convert.keymaps import unet_rename
    from vinf_jax.loading import abstract_params

    name = _unet_namer(cfg)
    return {path: UNET_PREFIX + name(torch_key(path, unet_rename)) for path in flatten_pure(abstract_params("unet", cfg))}


def _text_namer(key: str) -> str:
    """transformers CLIP text key -> open_clip key; q/k/v name their third of ``in_proj_*``."""
    rules = [
        (r"^text_model\.embeddings\.token_embedding\.weight$", "token_embedding.weight"),
        (r"^text_model\.embeddings\.position_embedding\.weight$", "positional_embedding"),
        (r"^text_model\.final_layer_norm\.(weight|bias)$", r"ln_final.\1"),
        (r"^text_model\.encoder\.layers\.(\d+)\.layer_norm1\.", r"transformer.resblocks.\1.ln_1."),
        (r"^text_model\.encoder\.layers\.(\d+)\.layer_norm2\.", r"transformer.resblocks.\1.ln_2."),
        (r"^text_model\.encoder\.layers\.(\d+)\.mlp\.fc1\.", r"transformer.resblocks.\1.mlp.c_fc."),
        (r"^text_model\.encoder\.layers\.(\d+)\.mlp\.fc2\.", r"transformer.resblocks.\1.mlp.c_proj."),
        (r"^text_model\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"transformer.resblocks.\1.attn.out_proj."),
        (r"^text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$",
         r"transformer.resblocks.\1.attn.in_proj_\3[\2]"),
    ]
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return TEXT_PREFIX + new
    raise ConversionError(f"no OpenCLIP name for text encoder parameter {key}")


def _vae_namer(num_levels: int) -> Callable[[str], str]:
    """diffusers VAE decoder key -> LDM key (up blocks in reverse order; attention as 1x1 convs)."""
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}

    def name(key: str) -> str:
        key = re.sub(r"\.conv_shortcut\.", ".nin_shortcut.", key)
        key = re.sub(r"^decoder\.mid_block\.resnets\.([01])\.",
                     lambda m: f"decoder.mid.block_{int(m[1]) + 1}.", key)
        m = re.match(r"^decoder\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)$", key)
        if m:
            key = f"decoder.mid.attn_1.{attn[m[1]]}.{m[2]}"
        key = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.",
                     lambda m: f"decoder.up.{num_levels - 1 - int(m[1])}.block.", key)
        key = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                     lambda m: f"decoder.up.{num_levels - 1 - int(m[1])}.upsample.", key)
        key = key.replace("decoder.conv_norm_out.", "decoder.norm_out.")
        return VAE_PREFIX + key

    return name


# ------------------------------------------------------------------------------------ tensors


def _squeeze_linear(tensors: Mapping[str, np.ndarray], linear_keys: set[str]) -> dict[str, np.ndarray]:
    """1x1 Conv1d/Conv2d weights stored where we have a Linear (VideoCrafter's ``proj_in``/``proj_out``
    without ``use_linear``, the LDM VAE's attention): (out, in, 1[, 1]) -> (out, in)."""
    out = dict(tensors)
    for k in linear_keys & out.keys():
        v = out[k]
        if v.ndim > 2 and all(s == 1 for s in v.shape[2:]):
            out[k] = v.reshape(v.shape[:2])
    return out


def _split_in_proj(tensors: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """open_clip's fused ``attn.in_proj_{weight,bias}`` -> ``...in_proj_weight[q]`` / ``[k]`` / ``[v]``."""
    out, bad = {}, []
    for k, v in tensors.items():
        if re.search(r"\.attn\.in_proj_(weight|bias)$", k):
            if v.shape[0] % 3:
                bad.append(f"{k}: checkpoint {tuple(v.shape)}, first axis must hold q, k and v")
                continue
            for part, chunk in zip("qkv", np.split(np.asarray(v), 3, axis=0)):
                out[f"{k}[{part}]"] = chunk
        else:
            out[k] = v
    return out, bad


def _problems(fn) -> tuple[Any, list[str]]:
    """Run one part's conversion; its ConversionError's lines become problems to report with the others."""
    try:
        return fn(), []
    except ConversionError as e:
        return None, [line.strip() for line in str(e).splitlines() if line.strip()]


def _expected_schedule(s: dict) -> dict[str, np.ndarray]:
    """``alphas_cumprod`` and ``scale_arr`` as LatentDiffusion registers them (float64 maths, float32 buffers)."""
    from vinf_jax.sampling.videocrafter import ldm_alphas_cumprod, ldm_scale_arr

    out = {"alphas_cumprod": ldm_alphas_cumprod(s).astype(np.float32)}
    if s["use_scale"]:
        out["scale_arr"] = ldm_scale_arr(s).astype(np.float32)
    return out


def _check_schedule(tensors: Mapping[str, np.ndarray], model: LVDMModel) -> list[str]:
    problems = []
    for name, want in _expected_schedule(model.schedule).items():
        if name not in tensors:
            continue  # a pruned file without buffers: the yaml alone describes the schedule
        got = np.asarray(tensors[name], np.float64)
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-7):
            problems.append(f"buffer {name} {tuple(got.shape)} does not follow the schedule of {model.source} "
                            f"({', '.join(f'{k}={v}' for k, v in model.schedule.items())}); pass the checkpoint's "
                            "own inference yaml with --lvdm-config")
    if "scale_arr" in tensors and not model.schedule["use_scale"]:
        problems.append(f"the checkpoint holds scale_arr but {model.source} has use_scale false; pass the "
                        "checkpoint's own inference yaml with --lvdm-config")
    return problems


def convert_tensors(tensors: Mapping[str, np.ndarray], model: LVDMModel, what: str = "LVDM checkpoint"):
    """(unet params, text params, vae params, vae config); every problem of every part in one ConversionError."""
    from vinf_jax.convert.keymaps import unet_rename
    from vinf_jax.loading import abstract_params

    tensors = dict(tensors)
    problems: list[str] = []
    vae_cfg = model.vae
    if "scale_factor" in tensors:  # scale_by_std: the factor was measured in training and stored as a buffer
        vae_cfg = dataclasses.replace(vae_cfg, scaling_factor=float(np.asarray(tensors["scale_factor"])))
    problems += _check_schedule(tensors, model)
    known = (UNET_PREFIX, TEXT_PREFIX, VAE_PREFIX)
    stray = sorted(k for k in tensors if not k.startswith(known) and k not in SCHEDULE_BUFFERS)
    if stray:
        problems.append(f"{len(stray)} unexpected key(s): " + ", ".join(stray))

    def part(prefix):
        return {k: v for k, v in tensors.items() if k.startswith(prefix)}

    def linear_leaves(abstract, namer):
        return {namer(torch_key(p)) for p, s in flatten_pure(abstract).items()
                if p.endswith(".kernel") and len(s.shape) == 2}

    # UNet
    unet_abstract = abstract_params("unet", model.unet)
    unet_name = _unet_namer(model.unet)
    name = lambda k: UNET_PREFIX + unet_name(unet_rename(k))
    unet_t = _squeeze_linear(part(UNET_PREFIX), linear_leaves(unet_abstract, lambda k: name(k)))
    unet, p = _problems(lambda: params_from_torch(unet_abstract, unet_t, rename=name, what="unet"))
    problems += [f"unet ({UNET_PREFIX}*): {x}" for x in p if not x.startswith("cannot convert")]

    # text: the last stored block is not used at the penultimate layer; projection and logit scale never
    text_abstract = abstract_params("text_encoder", model.text)
    text_t, bad = _split_in_proj(part(TEXT_PREFIX))
    unused = [f"{TEXT_PREFIX}transformer.resblocks.{i}." for i in range(model.text.num_hidden_layers, model.text_layers)]
    unused += [f"{TEXT_PREFIX}{k}" for k in ("text_projection", "logit_scale", "attn_mask", "visual.")]
    text, p = _problems(lambda: params_from_torch(text_abstract, text_t, rename=_text_namer, what="text",
                                                  ignore=lambda k: k.startswith(tuple(unused))))
    problems += [f"text ({TEXT_PREFIX}*): {x}" for x in bad + p if not x.startswith("cannot convert")]

    # VAE decoder: the encoder and quant_conv only encode images
    vae_abstract = abstract_params("vae", vae_cfg)
    vae_name = _vae_namer(len(vae_cfg.block_out_channels))
    vae_t = _squeeze_linear(part(VAE_PREFIX), linear_leaves(vae_abstract, vae_name))
    vae, p = _problems(lambda: params_from_torch(
        vae_abstract, vae_t, rename=vae_name, what="vae",
        ignore=lambda k: k.startswith((VAE_PREFIX + "encoder.", VAE_PREFIX + "quant_conv."))))
    problems += [f"vae ({VAE_PREFIX}*): {x}" for x in p if not x.startswith("cannot convert")]
    if problems:
        raise ConversionError(f"cannot convert {what}:\n  " + "\n  ".join(problems))
    return unet, text, vae, vae_cfg


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of an LVDM ``model.ckpt`` (weights-only unpickling) or a ``.safetensors`` with its keys."""
    from vinf_jax.convert.safetensors_io import _read_file, _read_pickle

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"--lvdm: {path} does not exist")
    if path.suffix == ".safetensors":
        return _read_file(path)
    return _read_pickle(path)


def scheduler_config(model: LVDMModel) -> dict:
    """The checkpoint's sampler: diffusers keys for DDIM with VideoCrafter's timesteps (uniform, +1), plus
    ``videocrafter``: what its own DDIM sampler adds (eta 1.0 by default, the x0 rescaling of use_scale)."""
    s = model.schedule
    return {
        "_class_name": "DDIMScheduler", "num_train_timesteps": s["num_train_timesteps"],
        # LDM's "linear" is linspace(sqrt(start), sqrt(end))**2, diffusers' "scaled_linear"
        "beta_schedule": {"linear": "scaled_linear", "sqrt_linear": "linear"}[s["beta_schedule"]],
        "beta_start": s["linear_start"], "beta_end": s["linear_end"], "trained_betas": None,
        "prediction_type": {"eps": "epsilon", "x0": "sample"}[s["parameterization"]],
        "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "leading",
        "videocrafter": {**s, "eta": 1.0},
    }


# ------------------------------------------------------------------------------------ the folder


def find_vocab(explicit: str | Path | None) -> Path:
    """OpenCLIP's ``bpe_simple_vocab_16e6.txt.gz``: ``--openclip-vocab``, else the installed open_clip_torch's."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConversionError(f"--openclip-vocab: {path} does not exist")
        return path
    import importlib.util

    spec = importlib.util.find_spec("open_clip")  # finds the package's folder without importing it (torchvision)
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
        if path.is_file():
            return path
    raise ConversionError("the OpenCLIP tokenizer's vocabulary (bpe_simple_vocab_16e6.txt.gz) was not found: "
                          "pip install --no-deps open_clip_torch==2.22.0, or pass --openclip-vocab FILE")


def with_turbo(tensors: dict, model: LVDMModel, *, lvdm_unet=None, lora=None) -> tuple[dict, LVDMModel, str | None]:
    """(tensors, model, T2V-Turbo kind or None) after ``--lvdm-unet`` (a UNet state dict replacing the
    checkpoint's) or ``--lora`` (T2V-Turbo v1, merged into the checkpoint's UNet); see ``convert/turbo.py``."""
    from vinf_jax.convert import turbo

    if lvdm_unet is not None and lora is not None:
        raise ConversionError("--lvdm-unet and --lora: pass one (v2 ships a whole UNet, v1 a LoRA on VideoCrafter2's)")
    if lvdm_unet is not None:
        state = turbo.read_unet_state(lvdm_unet)
        kind = turbo.unet_kind(state)
        tdim, mdim = turbo.cond_dims(state)
        tensors = {k: v for k, v in tensors.items() if not k.startswith(UNET_PREFIX)}
        tensors.update({UNET_PREFIX + k: v for k, v in state.items()})
        unet = dataclasses.replace(model.unet, time_cond_proj_dim=tdim, motion_cond_proj_dim=mdim)
        return tensors, dataclasses.replace(model, unet=unet), kind
    if lora is not None:
        loras = turbo.read_lora(lora)
        tensors = dict(tensors)
        tensors[UNET_PREFIX + "time_cond_proj.weight"] = turbo.time_cond_proj_init(model.unet.block_out_channels[0])
        unet = dataclasses.replace(model.unet, time_cond_proj_dim=turbo.V1_COND_DIM)
        targets = turbo.lora_targets(model.unet_params, time_cond=True)
        tensors.update(turbo.merge_lora({k: v for k, v in tensors.items() if k.startswith(UNET_PREFIX)}, loras,
                                        targets, prefix=UNET_PREFIX))
        return tensors, dataclasses.replace(model, unet=unet), "v1"
    return tensors, model, None


def convert_lvdm(ckpt: str | Path, out: str | Path, *, config: str | Path | None = None,
                 vocab: str | Path | None = None, lvdm_unet: str | Path | None = None,
                 lora: str | Path | None = None) -> Path:
    """Convert an LVDM checkpoint into one vinf_jax checkpoint folder; nothing is written unless all checks pass.

    ``lvdm_unet`` / ``lora``: a T2V-Turbo UNet (v2) or LoRA (v1) on top of it (``convert/turbo.py``)."""
    import shutil

    from vinf_jax.convert.output import check_compatible, versions
    from vinf_jax.checkpoint import FORMAT, MARKER, atomic_folder, config_to_dict, save_params, write_json
    from vinf_jax.tokenizers import openclip

    out = Path(out)
    if out.exists():
        raise ConversionError(f"output folder {out.absolute()} already exists; choose a new --out")
    model = model_from_params(read_yaml(config), str(config)) if config else model_from_params(None)
    vocab_path = find_vocab(vocab)
    try:
        tokenizer = openclip.OpenCLIPTokenizer.from_file(vocab_path, model.text.max_position_embeddings)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ConversionError(f"OpenCLIP vocabulary {vocab_path}: {e}") from None
    if len(tokenizer) > model.text.vocab_size:
        raise ConversionError(f"OpenCLIP vocabulary {vocab_path} has {len(tokenizer)} tokens but the text tower "
                              f"has vocab_size {model.text.vocab_size}")
    check_compatible(model.unet, model.text, model.vae)
    tensors, model, kind = with_turbo(read_checkpoint(ckpt), model, lvdm_unet=lvdm_unet, lora=lora)
    what = f"LVDM checkpoint {ckpt}" + (f" with --lvdm-unet {lvdm_unet}" if lvdm_unet else "")
    unet, text, vae, vae_cfg = convert_tensors(tensors, model, what)
    scheduler = scheduler_config(model)
    source = {"lvdm": str(Path(ckpt).absolute()), "lvdm_config": model.source}
    if kind is not None:
        from vinf_jax.convert import turbo
        from vinf_jax.sampling.turbo import KIND_DEFAULTS

        scheduler["t2v_turbo"] = {"kind": kind, **KIND_DEFAULTS[kind]}  # scheduler "auto" -> t2v-turbo
        source["t2v_turbo"] = kind
        if kind == "v1":
            source["lora"] = str(Path(lora).absolute())
            source["time_cond_proj_init"] = (f"nn.Linear init U(-1/sqrt(256), 1/sqrt(256)), torch seed "
                                             f"{turbo.V1_INIT_SEED} (the published LoRA's base was never released)")
            turbo.warn_v1_init()
    if lvdm_unet is not None:
        source["lvdm_unet"] = str(Path(lvdm_unet).absolute())
    parts = {"unet": (model.unet, unet), "text_encoder": (model.text, text), "vae": (vae_cfg, vae)}
    with atomic_folder(out) as tmp:
        for name, (cfg, params) in parts.items():
            (tmp / name).mkdir()
            write_json(tmp / name / "config.json", config_to_dict(cfg))
            save_params(tmp / name, params)
        (tmp / "tokenizer").mkdir()
        shutil.copyfile(vocab_path, tmp / "tokenizer" / openclip.VOCAB_NAME)
        write_json(tmp / "tokenizer" / openclip.CONFIG_NAME, {
            "tokenizer_class": openclip.CLASS_NAME, "vocab_file": openclip.VOCAB_NAME,
            "model_max_length": model.text.max_position_embeddings,
            "padding": "zeros after <end_of_text>, as open_clip.tokenize"})
        (tmp / "scheduler").mkdir()
        write_json(tmp / "scheduler" / "scheduler_config.json", scheduler)
        write_json(tmp / MARKER, {"format": FORMAT, "components": [*parts, "tokenizer", "scheduler"],
                                  "source": {**source, "openclip_vocab": str(vocab_path.absolute()),
                                             "text_layer": "penultimate" if model.text_layers > model.text.num_hidden_layers
                                             else "last"},
                                  "versions": versions()})
    return out
