"""Half precision against float32 on one tiny model: our bfloat16 generation vs diffusers' float16 (the
released Video-Infinity code's precision), each relative to its own float32 run.

    python benchmarks/precision.py [--steps 20] [--out benchmarks/results/precision.json]

One random tiny VideoCrafter2-architecture UNet + VAE (diffusers classes, every weight random), the same
fixed start latents, prompt embeddings, guidance 12 and DDIM (eta 0) schedule on both sides:

- ours: ``VideoInfinityPipeline`` (one clip, vanilla temporal settings) with ``dtype`` float32 and
  bfloat16: norms' parameters and statistics, the noise prediction's last conv, guidance, solver and
  the VAE's division by its scaling factor in float32;
- diffusers: the UNet (+ the port's fps embedding) and ``AutoencoderKL`` in float32 and float16 with
  ``DDIMScheduler``, guidance and the scheduler in the latents' dtype, as ``TextToVideoSDPipeline`` does.

Reported: relative L2 error of the final latents and of the decoded frames against float32, per side.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402

UNET = dict(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=32, attention_head_dim=8,
            cross_attention_dim=32, down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"))
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
           down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
           layers_per_block=1, norm_num_groups=32, sample_size=32, scaling_factor=0.18215)
SCHEDULER = {"_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon",
             "set_alpha_to_one": False, "steps_offset": 1}
FRAMES, HW, GUIDANCE, FPS = 8, 16, 12.0, 24


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def models(seed=0):
    import torch
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from torch_refs import randomize_ as randomize_normal
    from unet_refs import FpsUNet, randomize_

    torch.manual_seed(seed)
    unet = FpsUNet(UNet3DConditionModel(**UNET))
    randomize_(unet.unet, seed=seed)
    vae = randomize_normal(AutoencoderKL(**VAE), 0.05, seed)
    return unet.eval(), vae.eval()


def ours(unet, vae, latents, ctx, steps, dtype):
    from vinf_jax.config import AttnConfig, ConvLayerConfig, Phase, VideoInfinityConfig
    from vinf_jax.convert.keymaps import convert_vae, unet_rename
    from vinf_jax.convert.mapping import params_from_torch
    from vinf_jax.loading import Model
    from vinf_jax.models.unet3d import UNetConfig
    from vinf_jax.pipeline import VideoInfinityPipeline

    cfg = UNetConfig.from_dict(dict(UNET), fps_cond=True)
    model = Model("unet", cfg)
    model.params = params_from_torch(model.abstract, {k: v.numpy() for k, v in unet.unet.state_dict().items()},
                                     rename=unet_rename)
    vae_cfg, vae_params = convert_vae(dict(vae.config), {k: v.numpy() for k, v in vae.state_dict().items()})
    vae_model = Model("vae", vae_cfg, vae_params)
    ref = VideoInfinityPipeline.tiny_random(devices=1)
    pipe = VideoInfinityPipeline(model, ref.text_encoder, vae_model, ref.tokenizer, SCHEDULER, devices=1, dtype=dtype)
    pipe.encode_prompt = lambda prompts: ctx  # fixed embeddings: [cond, uncond]
    vi = VideoInfinityConfig(edge_mode="exact", num_clips=1,
                             attn=AttnConfig(padding=FRAMES - 1, top_k=0, local_phase=Phase(500, 3.0, 0.0),
                                             global_phase=Phase(500, 0.0, 2.0)),
                             conv_layer=ConvLayerConfig(padding=FRAMES))
    kw = dict(num_frames=FRAMES, num_clips=1, steps=steps, guidance_scale=GUIDANCE, fps=FPS, height=HW * 2,
              width=HW * 2, latents=latents, scheduler="ddim", vi_config=vi)
    lat = pipe(["p"], output_type="latent", **kw)
    frames = pipe.decode(lat)
    return lat, frames


def diffusers_run(unet, vae, latents, ctx, steps, dtype):
    import torch
    from diffusers import DDIMScheduler

    unet, vae = unet.to(dtype), vae.to(dtype)
    sched = DDIMScheduler.from_config(SCHEDULER)
    sched.set_timesteps(steps)
    x = torch.from_numpy(latents).to(dtype)
    cond = torch.from_numpy(ctx[:1]).to(dtype)
    uncond = torch.from_numpy(ctx[1:]).to(dtype)
    with torch.no_grad():
        for t in sched.timesteps:
            eps = unet(torch.cat([x, x]), t, torch.cat([uncond, cond]), torch.tensor(float(FPS), dtype=dtype))
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + GUIDANCE * (eps_c - eps_u)
            x = sched.step(eps, t, x).prev_sample
        b, c, f, h, w = x.shape
        z = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w) / vae.config.scaling_factor
        img = vae.decode(z).sample
    unet.float(), vae.float()
    frames = (img.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return x.float().numpy(), frames


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "precision.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import torch

    unet, vae = models()
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((1, 4, FRAMES, HW, HW)).astype(np.float32)
    ctx = rng.standard_normal((2, 77, 32)).astype(np.float32)  # [cond, uncond]
    t0 = time.perf_counter()
    o32 = ours(unet, vae, latents, ctx, args.steps, "float32")
    o16 = ours(unet, vae, latents, ctx, args.steps, "bfloat16")
    d32 = diffusers_run(unet, vae, latents, ctx, args.steps, torch.float32)
    d16 = diffusers_run(unet, vae, latents, ctx, args.steps, torch.float16)
    result = {
        "what": "relative L2 error against the same side's float32 run (tiny random VideoCrafter2-architecture "
                f"model, {FRAMES} frames of {HW}x{HW} latents, DDIM {args.steps} steps, guidance {GUIDANCE})",
        "ours_bfloat16": {"latents": rel(o16[0], o32[0]), "frames": rel(o16[1], o32[1])},
        "diffusers_float16": {"latents": rel(d16[0], d32[0]), "frames": rel(d16[1], d32[1])},
        "float32_ours_vs_diffusers": {"latents": rel(o32[0], d32[0]), "frames": rel(o32[1], d32[1])},
        "platform": jax.devices()[0].platform, "seconds": round(time.perf_counter() - t0, 1),
        "versions": {"jax": jax.__version__, "torch": torch.__version__.split("+")[0],
                     "diffusers": __import__("diffusers").__version__},
    }
    from vinf_jax.output.jsonfile import dumps, write_json

    write_json(args.out, result)
    print(dumps(result), end="")


if __name__ == "__main__":
    main()
