"""Half precision against float32 on one tiny model: our float16 and bfloat16 generations vs diffusers'
float16 (the released Video-Infinity code's precision), each relative to its own float32 run; and the
VAE decoder alone in half precision (same float32 latents in, frames out), which decides its dtype.

    python benchmarks/precision.py [--steps 20] [--seeds 3] [--out benchmarks/results/precision.json]

One random tiny VideoCrafter2-architecture UNet + VAE (diffusers classes, every weight random), the same
fixed start latents, prompt embeddings, guidance 12 and DDIM (eta 0) schedule on both sides:

- ours: ``VideoInfinityPipeline`` (one clip, vanilla temporal settings) with ``dtype`` float32, float16
  and bfloat16: norms' parameters and statistics, the noise prediction's last conv, guidance, solver and
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
    return lat, frames, pipe


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
    unet.float(), vae.float()
    return x.float().numpy(), diffusers_decode(vae, x.float().numpy(), dtype)


def diffusers_decode(vae, latents, dtype):
    """(1, C, T, h, w) latents -> (T, H, W, 3) frames in [0, 1], the VAE in ``dtype`` as the pipelines do."""
    import torch

    vae = vae.to(dtype)
    x = torch.from_numpy(np.asarray(latents, np.float32)).to(dtype)
    b, c, f, h, w = x.shape
    with torch.no_grad():
        img = vae.decode(x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w) / vae.config.scaling_factor).sample
    vae.float()
    return (img.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def one_seed(seed: int, steps: int) -> dict:
    """Every row for one random model, start latents and prompt embeddings (``seed``)."""
    import torch

    unet, vae = models(seed)
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((1, 4, FRAMES, HW, HW)).astype(np.float32)
    ctx = rng.standard_normal((2, 77, 32)).astype(np.float32)  # [cond, uncond]
    o32 = ours(unet, vae, latents, ctx, steps, "float32")
    of16 = ours(unet, vae, latents, ctx, steps, "float16")
    obf16 = ours(unet, vae, latents, ctx, steps, "bfloat16")
    d32 = diffusers_run(unet, vae, latents, ctx, steps, torch.float32)
    d16 = diffusers_run(unet, vae, latents, ctx, steps, torch.float16)
    pair = lambda half, full: {"latents": rel(half[0], full[0]), "frames": rel(half[1], full[1])}  # noqa: E731
    return {
        "ours_float16": pair(of16, o32), "ours_bfloat16": pair(obf16, o32), "diffusers_float16": pair(d16, d32),
        # the decoder alone: the float32 run's latents decoded in half precision
        "vae_only_frames": {"ours_float16": rel(of16[2].decode(o32[0]), o32[1]),
                            "ours_bfloat16": rel(obf16[2].decode(o32[0]), o32[1]),
                            "diffusers_float16": rel(diffusers_decode(vae, d32[0], torch.float16), d32[1])},
        "float32_ours_vs_diffusers": pair(o32, d32),
    }


def mean_rows(per_seed: list[dict]) -> dict:
    """The mean over seeds of every number of ``one_seed``'s rows (same nesting)."""
    first = per_seed[0]
    if isinstance(first, dict):
        return {k: mean_rows([r[k] for r in per_seed]) for k in first}
    return float(np.mean(per_seed))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3, help="random models (and start latents) to average over: "
                    "one trajectory's error varies by ~5%% with the model, more than the dtypes' difference")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "precision.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import torch

    t0 = time.perf_counter()
    per_seed = [one_seed(seed, args.steps) for seed in range(args.seeds)]
    result = {
        "what": "relative L2 error against the same side's float32 run, mean over "
                f"{args.seeds} random tiny VideoCrafter2-architecture models (per_seed: each), {FRAMES} frames of "
                f"{HW}x{HW} latents, DDIM {args.steps} steps, guidance {GUIDANCE}",
        **mean_rows(per_seed), "per_seed": per_seed,
        "platform": jax.devices()[0].platform, "seconds": round(time.perf_counter() - t0, 1),
        "versions": {"jax": jax.__version__, "torch": torch.__version__.split("+")[0],
                     "diffusers": __import__("diffusers").__version__},
    }
    from vinf_jax.output.jsonfile import dumps, write_json

    write_json(args.out, result)
    print(dumps(result), end="")


if __name__ == "__main__":
    main()
