"""End-to-end tests of VideoInfinityPipeline.

* parity with diffusers' TextToVideoSDPipeline (tiny random CLIP + VAE + fps UNet, DDIM, guidance)
  under Video-Infinity settings that reduce to the vanilla model;
* the same video on 1, 2, 4 and 8 devices with the stochastic solver;
* one compilation per shape (seed, guidance scale and latents are traced arguments);
* predict_noise against the vanilla one-clip UNet, latent output layout, per-clip prompts.
"""

from __future__ import annotations

import numpy as np
import pytest

from vinf_jax.config import AttnConfig, ConvLayerConfig, Phase, VideoInfinityConfig
from vinf_jax.pipeline import VideoInfinityPipeline, clip_prompt_index
from jax_events import count_traces

REL = 1e-4  # max |diff| <= REL * max |ref|, float32 on the CPU

# zeroscope / VideoCrafter2 scheduler_config.json (a DDIMScheduler config)
SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                 prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def vanilla_vi(frames: int) -> VideoInfinityConfig:
    """Settings under which one clip is the vanilla model: exact edges, the local window covers the
    clip, no global rows (the phase biases then shift every logit of a row alike)."""
    return VideoInfinityConfig(edge_mode="exact", num_clips=1,
                               attn=AttnConfig(padding=frames - 1, top_k=0, local_phase=Phase(500, 3.0, 0.0),
                                               global_phase=Phase(500, 0.0, 2.0)),
                               conv_layer=ConvLayerConfig(padding=frames))


def assert_close(got, ref, rel=REL):
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    err, scale = float(np.abs(got - ref).max()), float(np.abs(ref).max())
    assert err <= rel * scale, (err, scale)
    return err, scale


# ---------------------------------------------------------------------------------------------------
# 1. parity with diffusers' TextToVideoSDPipeline

PARITY = dict(prompt="a cat and the dog on the sand", frames=4, height=16, width=16, steps=4, guidance=7.5, fps=8)


@pytest.fixture(scope="module")
def parity_models(tmp_path_factory):
    import torch
    from diffusers import DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel

    from torch_refs import state_dict_numpy, tiny_clip_text, tiny_tokenizer, tiny_vae
    from unet_refs import FpsUNet, randomize_, save_tiny_unet
    from vinf_jax.convert.keymaps import convert_text_encoder, convert_vae
    from vinf_jax.convert.videocrafter2 import convert_unet
    from vinf_jax.loading import Model

    tmp = tmp_path_factory.mktemp("parity")
    text, text_cfg = tiny_clip_text("quick_gelu")
    tokenizer = tiny_tokenizer(tmp)
    vae, vae_cfg = tiny_vae()  # two levels: scale factor 2
    torch.manual_seed(0)
    unet = UNet3DConditionModel(block_out_channels=(16, 24), layers_per_block=1, norm_num_groups=4,
                                attention_head_dim=4, cross_attention_dim=text_cfg["hidden_size"],
                                down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))
    fps_unet = FpsUNet(unet)
    randomize_(unet, seed=1)
    fps_unet.eval()
    ref = TextToVideoSDPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                scheduler=DDIMScheduler(**SCHEDULER))
    ref.set_progress_bar_config(disable=True)

    save_tiny_unet(fps_unet, tmp / "unet")
    unet_cfg, unet_params = convert_unet(tmp / "unet")
    tc, tp = convert_text_encoder(text_cfg, state_dict_numpy(text))
    vc, vp = convert_vae(vae_cfg, state_dict_numpy(vae))
    ours = VideoInfinityPipeline(Model("unet", unet_cfg, unet_params), Model("text_encoder", tc, tp),
                                 Model("vae", vc, vp),
                                 tokenizer, SCHEDULER, devices=1, dtype="float32")
    return fps_unet, ref, ours


def test_matches_diffusers_text_to_video(parity_models):
    import torch

    fps_unet, ref, ours = parity_models
    p = PARITY
    assert ours.vae_scale_factor == ref.vae_scale_factor == 2
    h, w = p["height"] // 2, p["width"] // 2
    latents = np.random.default_rng(0).standard_normal((1, 4, p["frames"], h, w)).astype(np.float32)
    # The diffusers pipeline calls the UNet directly: set the fps the hook adds to the time embedding.
    fps_unet._fps = torch.tensor([float(p["fps"])])
    common = dict(height=p["height"], width=p["width"], num_frames=p["frames"], num_inference_steps=p["steps"],
                  guidance_scale=p["guidance"], eta=0.0)
    with torch.no_grad():
        want_lat = ref(p["prompt"], latents=torch.from_numpy(latents), output_type="latent", **common).frames
        want = ref(p["prompt"], latents=torch.from_numpy(latents), output_type="np", **common).frames
    want_lat = want_lat.numpy()
    assert want.shape == (1, p["frames"], p["height"], p["width"], 3)

    kw = dict(num_frames=p["frames"], num_clips=1, steps=p["steps"], guidance_scale=p["guidance"], fps=p["fps"],
              height=p["height"], width=p["width"], latents=latents, scheduler="ddim", vi_config=vanilla_vi(p["frames"]))
    got_lat = ours(p["prompt"], output_type="latent", **kw)
    got = ours(p["prompt"], **kw)
    err_lat, scale_lat = assert_close(got_lat, want_lat)
    err, scale = assert_close(got, want[0])
    print(f"\nparity: latents max|diff| {err_lat:.2e} (max|ref| {scale_lat:.3g}), "
          f"frames max|diff| {err:.2e} (max|ref| {scale:.3g})")
    # the comparison means something: the sample moved, and the frames are not saturated
    assert np.abs(want_lat - latents).max() > 0.1
    inside = np.mean((want > 0.02) & (want < 0.98))
    assert inside > 0.5, inside
    # ... and the fps and guidance reach the output (ours alone; the reference takes fps from the hook)
    other_fps = ours(p["prompt"], output_type="latent", **{**kw, "fps": 24})
    assert np.abs(other_fps - got_lat).max() > 1e-3 * scale_lat


# ---------------------------------------------------------------------------------------------------
# 2./3. device-count invariance end to end, one compilation per shape

TINY = dict(num_frames=4, num_clips=8, steps=2, guidance_scale=9.0, fps=16, height=64, width=64, seed=7)
TINY_VI = VideoInfinityConfig(attn=AttnConfig(padding=2, top_k=4, local_phase=Phase(500, 3.0, 0.0),
                                              global_phase=Phase(500, 0.0, 2.0)),
                              conv_layer=ConvLayerConfig(padding=2))
PROMPTS = ["a red fox in the snow", "a boat on a quiet lake"]
DEVICES = (1, 2, 4, 8)


@pytest.fixture(scope="module")
def tiny_runs():
    """Per device count: the pipeline, its frames (default stochastic solver) and the traces it made.

    tiny_random is deterministic; the pipelines on 2, 4 and 8 devices reuse the one-device
    pipeline's components (building the random model again costs seconds, not coverage)."""
    runs = {}
    first = VideoInfinityPipeline.tiny_random(devices=1)
    for d in DEVICES:
        pipe = first if d == 1 else VideoInfinityPipeline(first.unet, first.text_encoder, first.vae, first.tokenizer,
                                                          first.scheduler_config, devices=d)
        assert pipe.num_devices == d
        with count_traces("denoise_loop") as traces:
            frames = pipe(PROMPTS, vi_config=TINY_VI, **TINY)
        runs[d] = dict(pipe=pipe, frames=frames, traces=traces["n"])
    return runs


def test_same_video_on_1_2_4_8_devices(tiny_runs):
    ref = tiny_runs[1]["frames"]
    assert ref.shape == (TINY["num_clips"] * TINY["num_frames"], TINY["height"], TINY["width"], 3)
    assert ref.dtype == np.float32 and ref.min() >= 0 and ref.max() <= 1
    assert ref.std() > 1e-2  # not a constant picture
    errs = {}
    for d in DEVICES[1:]:
        frames = tiny_runs[d]["frames"]
        assert frames.shape == ref.shape
        errs[d] = float(np.abs(frames - ref).max())
        assert errs[d] <= 1e-4, (d, errs)
    print(f"\ndevice invariance: max|diff| vs 1 device {errs}")


def test_one_compilation_per_shape(tiny_runs):
    """The first call traced the loop exactly once; later calls with the same shapes never do:
    seed, guidance scale, fps, prompts and given latents are traced arguments."""
    for d in DEVICES:
        assert tiny_runs[d]["traces"] == 1, (d, tiny_runs[d]["traces"])
    pipe = tiny_runs[8]["pipe"]
    run = lambda prompts=PROMPTS, **kw: pipe(prompts, vi_config=TINY_VI, output_type="latent", **{**TINY, **kw})
    with count_traces("denoise_loop") as traces:
        base = run()
        variants = {"seed": run(seed=8), "guidance": run(guidance_scale=3.0), "fps": run(fps=8),
                    "prompts": run(PROMPTS[::-1]), "latents": run(latents=np.zeros_like(base))}
    assert traces["n"] == 0
    for name, out in variants.items():  # ... and each of them reaches the output
        assert np.abs(out - base).max() > 1e-3, name
    np.testing.assert_array_equal(run(), base)  # same arguments, same video


def test_load_params_swaps_weights_without_tracing_again(tiny_runs):
    """New weights of the same shapes (the demo trainer's probes): the same compiled loop, and the video
    of a pipeline built with those weights."""
    import jax

    from vinf_jax.loading import Model

    pipe = tiny_runs[1]["pipe"]
    halved = jax.tree.map(lambda a: np.asarray(a) * 0.5, pipe.unet.params)
    other = VideoInfinityPipeline(Model("unet", pipe.unet.config, halved), pipe.text_encoder, pipe.vae,
                                  pipe.tokenizer, pipe.scheduler_config, devices=1)
    run = lambda p: np.asarray(p(PROMPTS, vi_config=TINY_VI, output_type="latent", **TINY))
    want = run(other)
    with count_traces("denoise_loop") as traces:
        before = run(pipe)
        pipe.load_params(unet=halved)
        got = run(pipe)
        pipe.load_params(unet=pipe.unet.params)  # the fixture's pipeline serves later tests
    assert traces["n"] == 0
    np.testing.assert_array_equal(got, want)
    assert np.abs(got - before).max() > 1e-3


# ---------------------------------------------------------------------------------------------------
# 4. predict_noise, latent output

def test_predict_noise_reduces_to_vanilla_unet(tiny_runs):
    from vinf_jax.loading import UNetFunction

    pipe = tiny_runs[1]["pipe"]
    f = 4
    rng = np.random.default_rng(3)
    latents = rng.standard_normal((2, 4, f, 8, 8)).astype(np.float32)
    emb = pipe.encode_prompt(["a red fox in the snow", ""])  # (2, 77, D)
    assert emb.shape == (2, 77, pipe.text_encoder.config.hidden_size) and emb.dtype == np.float32
    got = pipe.predict_noise(latents, 321, emb[:, None], fps=12, vi_config=vanilla_vi(f))
    want = np.asarray(UNetFunction(pipe.unet, "float32")(latents, 321, emb, fps=12))
    assert got.shape == latents.shape
    err, scale = assert_close(got, want, rel=1e-5)
    print(f"\npredict_noise vs UNetFunction: max|diff| {err:.2e} (max|ref| {scale:.3g})")


def test_latent_output_layout_and_decode(tiny_runs):
    pipe = tiny_runs[8]["pipe"]
    lat = pipe(PROMPTS, vi_config=TINY_VI, output_type="latent", **TINY)
    s = pipe.vae_scale_factor
    t = TINY["num_clips"] * TINY["num_frames"]
    assert lat.shape == (1, pipe.unet.config.in_channels, t, TINY["height"] // s, TINY["width"] // s)
    assert lat.dtype == np.float32
    # the frames of the same call are the decoded latents
    assert_close(pipe.decode(lat), tiny_runs[8]["frames"])
    # frames are axis 2 of the latents: latent frame 5 alone decodes to frame 5
    one = np.repeat(lat[:, :, 5:6], t, axis=2)  # same shape as above: no new decode program
    assert_close(pipe.decode(one)[3], tiny_runs[8]["frames"][5], rel=1e-5)


def test_export_video_equals_todays_frames(tiny_runs, tmp_path):
    """Same seed: the latents stay on the devices, and export_video's frames (npy) and mp4 equal
    today's path (decode -> float frames -> uint8 -> write_mp4) exactly."""
    import jax

    from vinf_jax.output.video_io import read_mp4, write_mp4

    pipe, today = tiny_runs[8]["pipe"], tiny_runs[8]["frames"]
    lat = pipe(PROMPTS, vi_config=TINY_VI, output_type="latent", **TINY)
    assert isinstance(lat, jax.Array) and len(lat.sharding.device_set) == 8
    res = pipe.export_video(lat, tmp_path / "new.mp4", fps=8, save_frames="npy")
    np.testing.assert_array_equal(np.load(tmp_path / "new.npy"), today)
    write_mp4(tmp_path / "today.mp4", today, 8)
    np.testing.assert_array_equal(read_mp4(res.path), read_mp4(tmp_path / "today.mp4"))


# ---------------------------------------------------------------------------------------------------
# 5. per-clip prompts

def test_clip_prompt_index():
    assert clip_prompt_index(4, 2) == [0, 0, 1, 1]
    assert clip_prompt_index(8, 3) == [0, 0, 0, 1, 1, 1, 2, 2]
    assert clip_prompt_index(8, 1) == [0] * 8
    assert clip_prompt_index(4, 4) == [0, 1, 2, 3]
    for n, k in [(8, 3), (6, 4), (5, 2), (16, 5)]:
        assert clip_prompt_index(n, k) == [(c * k) // n for c in range(n)]


def test_per_clip_prompts_end_to_end(tiny_runs):
    """Prompts [p, q] on 8 clips is the same video as one prompt per clip [p]*4 + [q]*4, and
    [a, b, c] is [a]*3 + [b]*3 + [c]*2; a different split is a different video."""
    pipe = tiny_runs[8]["pipe"]
    run = lambda prompts: pipe(prompts, vi_config=TINY_VI, output_type="latent", **TINY)
    two = run(PROMPTS)
    assert_close(run([PROMPTS[0]] * 4 + [PROMPTS[1]] * 4), two, rel=1e-6)
    abc = ["a cat", "a dog", "a bird"]
    three = run(abc)
    assert_close(run([abc[0]] * 3 + [abc[1]] * 3 + [abc[2]] * 2), three, rel=1e-6)
    assert np.abs(run([abc[0]] * 2 + [abc[1]] * 3 + [abc[2]] * 3) - three).max() > 1e-3


def test_latents_of_the_wrong_shape_are_refused(tiny_runs):
    """Given latents must be (1, C, N*F, h, w): anything else would silently make another video."""
    from vinf_jax.errors import ConfigError

    pipe = tiny_runs[2]["pipe"]
    s = pipe.vae_scale_factor
    good = (1, 4, TINY["num_clips"] * TINY["num_frames"], TINY["height"] // s, TINY["width"] // s)
    for bad in [(1, 4, good[2] // 2) + good[3:], good[:3] + (good[3] // 2, good[4] // 2)]:
        with pytest.raises(ConfigError, match="latents: expected shape"):
            pipe(PROMPTS, vi_config=TINY_VI, latents=np.zeros(bad, np.float32), **TINY)


def test_nan_in_the_loop_is_reported_with_its_step(tiny_runs):
    """A poisoned weight makes the latents NaN; the loop notices (inside the compiled program) and
    the error names the first bad step."""
    import copy

    from vinf_jax.errors import NonFiniteError
    from vinf_jax.loading import Model

    first = tiny_runs[1]["pipe"]
    params = copy.deepcopy(first.unet.params)
    params["conv_out"]["bias"] = np.array(params["conv_out"]["bias"], copy=True)
    params["conv_out"]["bias"][0] = np.nan
    poisoned = Model("unet", first.unet.config, params)
    pipe = VideoInfinityPipeline(poisoned, first.text_encoder, first.vae, first.tokenizer, first.scheduler_config,
                                 devices=2)
    with pytest.raises(NonFiniteError, match=r"at denoising step 0 of"):
        pipe(PROMPTS, vi_config=TINY_VI, **TINY)


# ---------------------------------------------------------------------------------------------------
# 7. lifetime, dtype vocabulary, prompts

def test_a_deleted_pipeline_is_freed(tiny_runs):
    """Jitted functions hold models, never the pipeline: after del and gc it is gone (with its device
    arrays), also after it compiled and ran every piece (encode, loop with progress, decode)."""
    import gc
    import weakref

    first = tiny_runs[2]["pipe"]
    pipe = VideoInfinityPipeline(first.unet, first.text_encoder, first.vae, first.tokenizer, first.scheduler_config,
                                 devices=2)
    steps = []
    frames = pipe(PROMPTS, vi_config=TINY_VI, progress=steps.append, **TINY)
    assert steps == list(range(TINY["steps"])) and frames.shape[0] == TINY["num_clips"] * TINY["num_frames"]
    pipe.predict_noise(np.zeros((1, 4, 8, 8, 8), np.float32), 500, pipe.encode_prompt(PROMPTS[:1]),
                       vi_config=TINY_VI.with_num_clips(2))
    ref = weakref.ref(pipe)
    del pipe
    gc.collect()
    assert ref() is None


def test_dtype_accepts_the_config_names_and_dtype_objects():
    import jax.numpy as jnp

    from vinf_jax.errors import ConfigError
    from vinf_jax.loading import UNetFunction

    first = VideoInfinityPipeline.tiny_random(devices=1, dtype=jnp.bfloat16)
    assert first.dtype == jnp.bfloat16
    for spelling, want in (("torch.bfloat16", jnp.bfloat16), ("bf16", jnp.bfloat16), (np.dtype("float32"), jnp.float32),
                           ("auto", jnp.float32), ("fp16", jnp.float16), (jnp.float16, jnp.float16)):
        pipe = VideoInfinityPipeline(first.unet, first.text_encoder, first.vae, first.tokenizer,
                                     first.scheduler_config, devices=1, dtype=spelling)
        assert pipe.dtype == want, spelling  # on the CPU auto is float32; a name is honoured
        assert UNetFunction(first.unet, spelling).dtype == pipe.dtype
    for bad in ("float64", "int8", np.int32, 3):
        with pytest.raises(ConfigError, match="^dtype: expected one of"):
            VideoInfinityPipeline(first.unet, first.text_encoder, first.vae, first.tokenizer, first.scheduler_config,
                                  devices=1, dtype=bad)
        with pytest.raises(ConfigError, match="^dtype: expected one of"):
            UNetFunction(first.unet, bad)


def test_long_prompt_warns_once_naming_what_was_cut(parity_models):
    """The real CLIP tokenizer: a prompt past 77 tokens is cut as diffusers cuts it, with a warning."""
    from vinf_jax.models.clip_text import PromptWarning

    ours = parity_models[2]
    long = "a cat " * 40 + "that the encoder never sees"
    with pytest.warns(PromptWarning, match="more than the text encoder.s 77") as caught:
        ours.encode_prompt([long, "short"])
    assert len(caught) == 1
    assert "never sees" in str(caught[0].message) and "more than the text encoder's" in str(caught[0].message)


def test_a_real_size_checkpoint_on_the_cpu_warns_with_the_gpu_install_command(tiny_runs):
    """from_pretrained calls this for every checkpoint folder; the tiny models stay under the 100 M
    parameter threshold, so lower it here."""
    import warnings

    from vinf_jax.errors import VinfWarning

    pipe = tiny_runs[1]["pipe"]
    with pytest.warns(VinfWarning, match=r"on the CPU: JAX sees no GPU.*pip install -e '\.\[cuda12\]'") as caught:
        pipe._warn_if_large_on_cpu(threshold=1)
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe._warn_if_large_on_cpu()  # 100 M: the tiny model is far below, no warning
