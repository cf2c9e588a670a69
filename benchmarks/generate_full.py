#!/usr/bin/env python
"""One whole generation through ``VideoInfinityPipeline`` on a full-size VideoCrafter2 model with
random weights: prompt encoding, the 30-step guided denoising loop (one compiled program), VAE decode.

    python benchmarks/generate_full.py --out generate.json               # 1 clip x 24 frames, 320x512, GPU
    python benchmarks/generate_full.py --small --steps 3                 # tiny-random pipeline, CPU

Timed: the first call (compiles the loop and the decoder), a second call returning latents (the
loop alone, compiled), and a decode of those latents; per-step times come from the loop's own
progress callback. Random weights in bf16 may drive the latents to NaN within 30 guided steps;
the pipeline then raises NonFiniteError after the loop has run, which is recorded, not fatal:
the times are still those of the full loop.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402

FULL_TEXT = {"vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
             "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu", "layer_norm_eps": 1e-5}
SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
             "prediction_type": "epsilon", "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}
PROMPT = "A beagle wearing diving goggles swimming in the ocean while the camera is moving, coral reefs in the background."


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="VideoInfinityPipeline.tiny_random (CPU)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default 24; 8 with --small)")
    p.add_argument("--clips", type=int, default=1, help="clips (a multiple of the devices)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--height", type=int, default=None, help="default 320; 64 with --small")
    p.add_argument("--width", type=int, default=None, help="default 512; 64 with --small")
    p.add_argument("--dtype", default=None, help="pipeline dtype (default: the pipeline's, bfloat16 on GPU)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    a.frames = a.frames or (8 if a.small else 24)
    a.height = a.height or (64 if a.small else 320)
    a.width = a.width or (64 if a.small else 512)
    return a


def full_pipeline(dtype):
    from vinf_jax import tiny
    from vinf_jax.loading import Model
    from vinf_jax.models.clip_text import CLIPTextConfig
    from vinf_jax.models.unet3d import UNetConfig
    from vinf_jax.models.vae import VAEConfig
    from vinf_jax.pipeline import VideoInfinityPipeline
    from vinf_jax.random_init import random_params

    configs = {"unet": UNetConfig.from_dict(common.unet_dict(False)), "text_encoder": CLIPTextConfig.from_dict(FULL_TEXT),
               "vae": VAEConfig.from_dict(common.vae_dict(False))}
    models = []
    for seed, (kind, cfg) in enumerate(configs.items()):
        model = Model(kind, cfg)
        model.params = random_params(model.abstract, seed, scale_std=0.1)  # float32 host arrays
        models.append(model)
    # The stand-in tokenizer hashes words into ids < 1024: any vocabulary at least that large works.
    return VideoInfinityPipeline(*models, tiny.WordTokenizer(), SCHEDULER, dtype=dtype)


def main(argv=None) -> int:
    args = parse_args(argv)
    res = {"benchmark": "generate_full", "command": " ".join(["python", os.path.relpath(sys.argv[0])] + sys.argv[1:]),
           "setup": {"small": args.small, "clips": args.clips, "frames_per_clip": args.frames, "steps": args.steps,
                     "video": [args.height, args.width], "guidance_scale": 12.0, "scheduler": "sde-dpmsolver++"}}
    try:
        import vinf_jax.pipeline  # noqa: F401
    except Exception as e:  # noqa: BLE001
        res["skipped"] = f"vinf_jax.pipeline is not importable: {type(e).__name__}: {e}"
        common.write_json(args.out, res)
        print(res["skipped"])
        return 0
    import jax
    import numpy as np
    from vinf_jax.errors import NonFiniteError
    from vinf_jax.pipeline import VideoInfinityPipeline

    res["env"] = common.env_info()
    t0 = time.perf_counter()
    pipe = VideoInfinityPipeline.tiny_random(dtype=args.dtype) if args.small else full_pipeline(args.dtype)
    res["build_s"] = time.perf_counter() - t0
    res["dtype"] = str(np.dtype(pipe.dtype))
    res["param_bytes_on_device"] = common.tree_bytes(pipe._unet_params) if hasattr(pipe, "_unet_params") else None
    print(f"pipeline built in {res['build_s']:.1f} s ({res['dtype']}, {pipe.num_devices} device(s))", flush=True)

    stamps: list[float] = []
    kw = dict(num_frames=args.frames, num_clips=args.clips, steps=args.steps, guidance_scale=12.0,
              height=args.height, width=args.width, seed=123, progress=lambda i: stamps.append(time.perf_counter()))

    def call(output_type):
        stamps.clear()
        t = time.perf_counter()
        out, error = None, None
        try:
            out = pipe(PROMPT, output_type=output_type, **kw)
        except NonFiniteError as e:
            error = str(e)
        wall = time.perf_counter() - t
        steps = np.diff(stamps) * 1e3 if len(stamps) > 1 else np.array([])
        return out, {"wall_s": wall, "non_finite": error, "callbacks": len(stamps),
                     "step_ms_median": float(np.median(steps)) if steps.size else None}

    frames, res["first_call"] = call("np")
    print(f"first call (compile + loop + decode): {res['first_call']['wall_s']:.1f} s", flush=True)
    common.write_json(args.out, res)
    latents, res["loop_only"] = call("latent")
    print(f"second call, latents only: {res['loop_only']['wall_s']:.2f} s, "
          f"median step {res['loop_only']['step_ms_median']} ms", flush=True)
    if latents is not None:
        t = time.perf_counter()
        frames = pipe.decode(latents)
        res["decode_s"] = time.perf_counter() - t
        res["frames_shape"] = list(frames.shape)
        res["frames_finite"] = bool(np.isfinite(frames).all())
    res["device_memory"] = common.device_memory(jax.devices()[0])
    common.write_json(args.out, res)
    print(f"decode: {res.get('decode_s', float('nan')):.2f} s; frames {res.get('frames_shape')}; "
          f"peak {common.fmt_bytes(res['device_memory'].get('peak_bytes_in_use'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
