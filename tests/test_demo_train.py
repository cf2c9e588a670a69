"""Training the demo model: the objectives learn in a few steps, and what the exporter writes is a
real diffusers pipeline that our converter reads back exactly (tiny sizes; seconds of compute)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vinf_jax.demo import train, world

TINY_UNET = dict(down_block_types=["CrossAttnDownBlock3D"], up_block_types=["CrossAttnUpBlock3D"],
                 block_out_channels=[16], layers_per_block=1, norm_num_groups=4, attention_head_dim=8,
                 cross_attention_dim=16)
TINY_TEXT = dict(train.TEXT, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
TINY_VAE = dict(train.VAE, block_out_channels=[4, 8], norm_num_groups=2, up_block_types=["UpDecoderBlock2D"] * 2)


def pooled_latents(frames: np.ndarray, factor: int = 8) -> np.ndarray:
    """A stand-in for latents: frames (T, 64, 64, 3) average-pooled to 8x8, plus one constant channel."""
    t, h, w, _ = frames.shape
    x = frames.reshape(t, h // factor, factor, w // factor, factor, 3).mean((2, 4)) * 4 - 1
    return np.concatenate([x, np.full(x.shape[:-1] + (1,), 0.5, np.float32)], -1)


def test_unet_and_text_encoder_loss_falls():
    import jax.numpy as jnp
    from transformers import CLIPTokenizer

    from vinf_jax.demo.tokenizer import write_tokenizer
    from vinf_jax.models.clip_text import CLIPTextConfig, tokenize
    from vinf_jax.models.unet3d import UNetConfig

    params, opt_state, step, loss, _ = train.unet_objective(
        UNetConfig.from_dict(TINY_UNET, fps_cond=True), CLIPTextConfig.from_dict(TINY_TEXT), lr=3e-3, steps=20, seed=0)
    scenes = [world.scene_from_seed(s) for s in (1, 2)]
    x0 = np.stack([pooled_latents(world.render(s, 4, 12)) for s in scenes])  # (2, 4, 8, 8, 4)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(d)
        ids = tokenize(CLIPTokenizer.from_pretrained(d), [world.caption(s) for s in scenes])
    rng = np.random.default_rng(0)
    batch = (jnp.asarray(x0), jnp.asarray(ids), jnp.asarray([12.0, 12.0]), jnp.asarray([300, 700]),
             jnp.asarray(rng.standard_normal(x0.shape).astype(np.float32)))
    before = float(loss(params, *batch))
    for _ in range(8):
        params, opt_state, _ = step(params, opt_state, *batch)
    after = float(loss(params, *batch))
    assert np.isfinite(before) and after < 0.8 * before, (before, after)


def test_v_prediction_target_is_diffusers_velocity():
    """The training target is what diffusers' scheduler (and so the pipeline's solver) calls v."""
    torch = pytest.importorskip("torch")
    from diffusers import DDIMScheduler

    assert train.SCHEDULER["prediction_type"] == "v_prediction"
    rng = np.random.default_rng(0)
    x0, noise = rng.standard_normal((2, 3, 4, 4, 4)).astype(np.float32), rng.standard_normal((2, 3, 4, 4, 4)).astype(np.float32)
    t = np.array([10, 990])
    ab = train.alphas_cumprod()[t][:, None, None, None, None].astype(np.float32)
    sched = DDIMScheduler.from_config({k: v for k, v in train.SCHEDULER.items() if k != "_class_name"})
    want = sched.get_velocity(torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t)).numpy()
    np.testing.assert_allclose(np.asarray(train.target(x0, noise, ab)), want, atol=2e-6)


def test_zero_terminal_snr_schedule_is_diffusers():
    """With ``rescale_betas_zero_snr`` the trainer's alpha-bar is diffusers' (float32 rounding apart) and ends at
    0: at t = 999 the input is pure noise and the v target is minus the clean clip."""
    pytest.importorskip("torch")
    from diffusers import DDIMScheduler

    cfg = {k: v for k, v in train.SCHEDULER.items() if k != "_class_name"} | {"rescale_betas_zero_snr": True}
    ours = train.alphas_cumprod(cfg)
    np.testing.assert_allclose(ours, DDIMScheduler.from_config(cfg).alphas_cumprod.double().numpy(), atol=2e-6)
    assert ours[-1] == 0 and ours[0] == train.alphas_cumprod()[0]
    x0, noise = np.ones((1, 2, 2, 2, 4), np.float32), np.full((1, 2, 2, 2, 4), 3.0, np.float32)
    np.testing.assert_allclose(np.asarray(train.target(x0, noise, np.float32(ours[-1]))), -x0)


def test_motion_weighted_mse():
    """Static errors cost their square; an error that changes from frame to frame costs 1 + w times it:
    derived on errors whose frame mean is known."""
    static = np.ones((2, 4, 3, 3, 4), np.float32) * 0.5  # the same error in every frame
    moving = static * np.array([1, -1, 1, -1], np.float32)[None, :, None, None, None]  # zero mean over frames
    assert float(train.motion_weighted_mse(static, 4.0)) == pytest.approx(0.25)
    assert float(train.motion_weighted_mse(moving, 4.0)) == pytest.approx(0.25 * 5)
    assert float(train.motion_weighted_mse(moving, 0.0)) == pytest.approx(0.25)
    both = static + moving  # frames alternate 1, 0: mean square 0.5, plus 4 x the deviations' (+-0.5) 0.25
    assert float(train.motion_weighted_mse(both, 4.0)) == pytest.approx(0.5 + 4 * 0.25)


def test_within_group_mse():
    """The error's spread inside each group of consecutive clips: zero for a group sharing one error, the
    squared deviation from the group's mean otherwise; derived on errors whose group means are known."""
    shared = np.full((8, 2, 3, 3, 4), 0.5, np.float32)  # every clip the same error
    assert float(train.within_group_mse(shared, 4)) == 0.0
    ways = shared * np.array([1, -1, 1, -1, 2, 2, 2, 2], np.float32)[:, None, None, None, None]
    # group 1: errors +-0.5 around mean 0 (square 0.25); group 2: all 1.0 (spread 0): mean 0.125
    assert float(train.within_group_mse(ways, 4)) == pytest.approx(0.125)
    # in pairs, (+0.5, -0.5) twice and (1, 1) twice: the same spread
    assert float(train.within_group_mse(ways, 2)) == pytest.approx(0.125)


def test_group_weight_trains_on_the_weighted_loss_and_reports_the_plain_one():
    """With group_weight the step follows the gradient of loss + w * within-group error (the optimizer's
    moments after one step are those of that total's gradient, not the plain loss's) and returns the plain loss."""
    import jax
    import jax.numpy as jnp

    from vinf_jax.models.clip_text import CLIPTextConfig
    from vinf_jax.models.unet3d import UNetConfig

    ucfg = UNetConfig.from_dict(dict(train.UNET, block_out_channels=[8, 16], norm_num_groups=4,
                                     cross_attention_dim=16, attention_head_dim=4), fps_cond=True)
    tcfg = CLIPTextConfig.from_dict(dict(train.TEXT, hidden_size=16, intermediate_size=32, num_attention_heads=2))
    rng = np.random.default_rng(0)
    batch = (jnp.asarray(rng.standard_normal((4, 2, 8, 8, 4)), jnp.float32), jnp.asarray(rng.integers(0, 500, (4, 8))),
             jnp.full((4,), 16.0), jnp.asarray([900, 900, 300, 300]),
             jnp.asarray(np.repeat(rng.standard_normal((2, 2, 8, 8, 4)), 2, axis=0), jnp.float32))
    params, opt_state, step, loss, (ug, tg) = train.unet_objective(ucfg, tcfg, 1e-3, 10, 0, groups=2, group_weight=5.0)
    _, _, reported = step(params, opt_state, *batch)
    assert float(reported) == pytest.approx(float(loss(params, *batch)), rel=1e-5)

    from flax import nnx

    acp = jnp.asarray(train.alphas_cumprod(), jnp.float32)

    def total(p):
        x0, ids, fps, t, noise = batch
        ab = acp[t][:, None, None, None, None]
        out = nnx.merge(ug, p["unet"])(jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * noise, t.astype(jnp.float32),
                                       nnx.merge(tg, p["text"])(ids), fps)
        err = out - train.target(x0, noise, ab)
        return jnp.mean(jnp.square(err)) + 5.0 * train.within_group_mse(err, 2)

    # One step's optimizer state holds the clipped gradient linearly (Adam's first moment) and squared (the
    # second): equal to the trainer's optimizer fed the gradient of the total. (Params after a few Adam steps
    # are no test: Adam divides each gradient by its own size, so a near-zero one moves its parameter by
    # float noise scaled up to the rate.)
    opt = train._optimizer(1e-3, 10, 1.0)
    _, want = opt.update(jax.grad(total)(params), opt.init(params), params)
    _, ours, _ = step(params, opt_state, *batch)
    _, _, plain_step, _, _ = train.unet_objective(ucfg, tcfg, 1e-3, 10, 0, groups=2)  # group_weight 0
    _, plain, _ = plain_step(params, opt_state, *batch)
    def moments(state):  # {"mu": [...], "nu": [...]}: Adam's moments, leaf by leaf
        out = {"mu": [], "nu": []}
        for path, x in jax.tree_util.tree_leaves_with_path(state):
            name = next((k for k in out if k in jax.tree_util.keystr(path)), None)
            if name:
                out[name].append(np.asarray(x))
        return out

    ours, want, plain = moments(ours), moments(want), moments(plain)
    for k in ("mu", "nu"):  # tolerances against the largest moment: leaves with near-zero gradients are float noise
        scale = max(float(np.abs(b).max()) for b in want[k])
        assert len(ours[k]) == len(want[k]) > 0 and scale > 0
        for a, b in zip(ours[k], want[k]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)
        assert max(float(np.abs(a - b).max()) for a, b in zip(ours[k], plain[k])) > 1e-2 * scale


def test_high_noise_share_of_timesteps():
    t = train.timesteps(np.random.default_rng(0), 20000, 0.3)
    assert t.min() >= 0 and t.max() <= 999
    # uniform draws put half the batch at t >= 500; a 0.3 share drawn there adds 0.3 * 0.5
    np.testing.assert_allclose((t >= 500).mean(), 0.5 + 0.3 * 0.5, atol=0.01)
    np.testing.assert_array_equal(np.bincount(train.timesteps(np.random.default_rng(1), 50000, 0.0) // 250),
                                  np.bincount(np.random.default_rng(1).integers(0, 1000, 50000) // 250))


def test_high_noise_share_from_a_chosen_timestep():
    rng = np.random.default_rng(0)
    t = train.timesteps(rng, 20000, 0.4, high_noise_from=850)
    assert t.min() >= 0 and t.max() <= 999
    # uniform draws put 15 % of the batch at t >= 850; a 0.4 share drawn there adds 0.4 * 0.85
    np.testing.assert_allclose((t >= 850).mean(), 0.15 + 0.4 * 0.85, atol=0.01)
    # the default range is the old rule's (500 + t // 2): the shipped model's draws are unchanged
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    u, pick = b.integers(0, 1000, 500), b.random(500) < 0.3
    np.testing.assert_array_equal(train.timesteps(a, 500, 0.3), np.where(pick, 500 + u // 2, u))


def test_video_batches_draw_windows_as_the_shipped_run_did():
    """Windows of the encoded videos from the same rng draws, in the same order (video, then offset), as
    the trainer made them inline when the shipped model was trained: its run stays reproducible."""
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((5, 12, 2, 2, 4)).astype(np.float32)
    scenes = [world.scene_from_seed(s) for s in range(5)]
    fps = np.asarray([8, 12, 16, 24, 8], np.float32)
    x0, captions, clip_fps = train.video_batches(latents, scenes, fps, {"clip_frames": 8, "direction_groups": 1})(
        np.random.default_rng(4), 3)
    want = np.random.default_rng(4)
    v, off = want.integers(0, 5, size=3), want.integers(0, 12 - 8 + 1, size=3)
    np.testing.assert_array_equal(x0, np.stack([latents[a, o:o + 8] for a, o in zip(v, off)]))
    assert captions == [world.caption(scenes[a]) for a in v] and list(clip_fps) == list(fps[v])


def test_direction_groups_share_noise_and_timestep():
    """direction_groups=4: clips 0-3 share timestep and noise, the next group has its own; direction_groups=1
    draws exactly what the trainer drew inline for the shipped model (timesteps, then noise)."""
    p = dict(train.RECIPE, direction_groups=4)
    t, noise = train.noise_draws(np.random.default_rng(0), (8, 2, 3, 3, 4), p)
    assert noise.shape == (8, 2, 3, 3, 4) and len(set(t[:4])) == 1 and len(set(t[4:])) == 1
    np.testing.assert_array_equal(noise[0], noise[3])
    np.testing.assert_array_equal(noise[4], noise[7])
    assert not np.allclose(noise[0], noise[4])
    t1, n1 = train.noise_draws(np.random.default_rng(1), (6, 2, 3, 3, 4), dict(train.RECIPE))
    want = np.random.default_rng(1)
    np.testing.assert_array_equal(t1, train.timesteps(want, 6, train.RECIPE["high_noise"], train.RECIPE["high_noise_from"]))
    np.testing.assert_array_equal(n1, want.standard_normal((6, 2, 3, 3, 4)).astype(np.float32))


@pytest.mark.parametrize("groups", [2, 4])
def test_random_videos_in_direction_groups(groups):
    """Each video is followed by the same object on the same spot at the meeting frame, moving the other ways
    (2: the opposite one); without groups the draws are the shipped run's."""
    scenes, fps, starts = train.random_videos(np.random.default_rng(2), 3, groups, meet=4)
    assert len(scenes) == 3 * groups and list(fps[:groups]) == [fps[0]] * groups
    opposite = {"right": "left", "left": "right", "up": "down", "down": "up"}
    for g in range(3):
        group = scenes[g * groups:(g + 1) * groups]
        ways = [s.direction for s in group]
        assert len(set(ways)) == groups and (groups == 4 or ways[1] == opposite[ways[0]])
        spots = [world.trajectory(s, 1, float(fps[g * groups]), int(starts[g * groups]) + 4)[0] for s in group]
        np.testing.assert_allclose(world.wrapped_step(spots[0], np.asarray(spots)), 0, atol=1e-9)
    plain = train.random_videos(np.random.default_rng(2), 3)
    rng = np.random.default_rng(2)
    assert plain[0] == [world.random_scene(rng) for _ in range(3)]


def test_video_batches_in_direction_groups():
    """A batch of 8 with groups of 4 is two whole groups at one offset each, one clip of each way."""
    scenes, fps, _ = train.random_videos(np.random.default_rng(2), 3, 4, meet=4)
    latents = np.random.default_rng(3).standard_normal((12, 8, 2, 2, 4)).astype(np.float32)
    x0, captions, _ = train.video_batches(latents, scenes, fps, {"clip_frames": 8, "direction_groups": 4})(
        np.random.default_rng(4), 8)
    base = np.random.default_rng(4).integers(0, 3, size=2)
    for g in range(2):
        np.testing.assert_array_equal(x0[4 * g:4 * g + 4], latents[4 * base[g]:4 * base[g] + 4])
        assert sorted(world.parse_prompt(c)["direction"] for c in captions[4 * g:4 * g + 4]) == sorted(world.DIRECTIONS)


@pytest.mark.parametrize("sets, key", [(["direction_groups=4"], "direction_groups"),
                                       (["direction_groups=3", "unet_batch=6"], "direction_groups"),
                                       (["direction_groups=2", "video_frames=16"], "direction_groups"),
                                       (["group_weight=2"], "group_weight"),
                                       (["direction_groups=2", "group_weight=-1"], "group_weight")])
def test_direction_groups_are_checked(tmp_path, capsys, sets, key):
    """Groups must divide the batch (quick: 2) and meet in the middle of one-clip videos; group_weight weighs
    the error inside them: refused without groups, or below zero. The error names the key, nothing is written."""
    args = ["--out", str(tmp_path / "x"), "--quick"] + [a for kv in sets for a in ("--set", kv)]
    assert train.main(args) == 2
    assert key in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_fresh_batches_render_new_scenes_with_their_captions():
    """Each call renders new scenes (the rng's next draws) and encodes them; captions and fps belong to them."""
    import jax.numpy as jnp

    class PoolingEncoder:  # stands in for the autoencoder: frames (N, 64, 64, 3) -> "latents" (N, 8, 8, 4)
        def encode(self, x):  # pooled_latents of the frames in [0, 1], traceable
            y = ((x + 1) / 2).reshape(x.shape[0], 8, 8, 8, 8, 3).mean((2, 4)) * 4 - 1
            return jnp.concatenate([y, jnp.full(y.shape[:-1] + (1,), 0.5)], -1), None

    p = dict(train.PRESETS["quick"], clip_frames=4)
    draw = train.fresh_batches(PoolingEncoder(), 2.0, p)
    x0, captions, fps = draw(np.random.default_rng(5), 3)
    assert x0.shape == (3, 4, 8, 8, 4)
    rng = np.random.default_rng(5)  # the same draws, in the order fresh_batches makes them
    scenes = [world.random_scene(rng) for _ in range(3)]
    want_fps = rng.choice(world.FPS_CHOICES, size=3)
    starts = rng.integers(0, 256, size=3)
    assert captions == [world.caption(s) for s in scenes] and list(fps) == list(want_fps)
    for k, (s, f, st) in enumerate(zip(scenes, want_fps, starts)):
        np.testing.assert_allclose(x0[k], 2.0 * pooled_latents(world.render(s, 4, float(f), start=int(st))), atol=1e-5)
    again, _, _ = draw(np.random.default_rng(6), 3)
    assert not np.allclose(again, x0)


def test_text_encoder_learning_rate_scale():
    import jax.numpy as jnp

    params = {"unet": {"w": jnp.ones(3)}, "text": {"w": jnp.ones(3)}}
    grads = {"unet": {"w": jnp.full(3, 0.1)}, "text": {"w": jnp.full(3, 0.1)}}
    opt = train._optimizer(1e-2, 100, text_lr_scale=0.25)
    state = opt.init(params)
    for _ in range(20):  # past warm-up; Adam's first steps move every weight by about the learning rate
        updates, state = opt.update(grads, state, params)
    ratio = float(jnp.abs(updates["text"]["w"]).mean() / jnp.abs(updates["unet"]["w"]).mean())
    np.testing.assert_allclose(ratio, 0.25, rtol=0.02)


def test_every_world_word_is_one_token(tmp_path):
    from transformers import CLIPTokenizer

    from vinf_jax.demo.tokenizer import write_tokenizer

    write_tokenizer(tmp_path)
    tok = CLIPTokenizer.from_pretrained(str(tmp_path))
    assert {w: tok.tokenize(w) for w in world.WORDS} == {w: [w + "</w>"] for w in world.WORDS}
    assert len(tok("a green square moving left").input_ids) == 7  # start, five words, end


def test_every_caption_fits_the_text_encoders_context(tmp_path):
    """The demo's context is 8 tokens: every caption of the world is whole (no PromptWarning), padded
    with one end token, and the text encoder has exactly as many positions."""
    import warnings

    from transformers import CLIPTokenizer

    from vinf_jax.demo.tokenizer import MAX_LENGTH, write_tokenizer
    from vinf_jax.models.clip_text import PromptWarning, tokenize

    write_tokenizer(tmp_path)
    tok = CLIPTokenizer.from_pretrained(str(tmp_path))
    assert tok.model_max_length == MAX_LENGTH == train.TEXT["max_position_embeddings"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptWarning)
        ids = tokenize(tok, world.all_prompts())
    assert ids.shape == (32, MAX_LENGTH)
    assert (ids[:, -2:] == tok.eos_token_id).all() and len({tuple(r) for r in ids}) == 32
    with pytest.warns(PromptWarning, match="cut: 'left'"):  # 9 tokens: the last word does not fit
        tokenize(tok, "a red circle moving right moving left")


def test_vae_loss_falls():
    import jax
    import jax.numpy as jnp

    from vinf_jax.models.vae import VAEConfig

    params, opt_state, step, loss, _ = train.vae_objective(VAEConfig.from_dict(TINY_VAE), lr=3e-3, steps=20, seed=0)
    x = jnp.asarray(train.random_frames(np.random.default_rng(0), 4)[:, ::4, ::4])  # (4, 16, 16, 3)
    key = jax.random.key(0)
    before = float(loss(params, x, key)[1])
    for _ in range(8):
        params, opt_state, _ = step(params, opt_state, x, key)
    after = float(loss(params, x, key)[1])
    assert after < 0.7 * before, (before, after)


def test_vae_objective_weighs_object_pixels():
    """The reconstruction term is sum(w * err) / sum(w) with w = 1 + object_weight on object pixels
    (brighter than black) and 1 on the background; recomputed here from the model's own decode."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from vinf_jax.models.vae import VAEConfig

    x = jnp.asarray(train.random_frames(np.random.default_rng(1), 2)[:, ::4, ::4])
    key = jax.random.key(3)
    params, _, _, loss, graphdef = train.vae_objective(VAEConfig.from_dict(TINY_VAE), lr=1e-3, steps=2, seed=0,
                                                       object_weight=30.0)
    m = nnx.merge(graphdef, params)
    mean, logvar = m.encode(x)
    err = np.asarray(jnp.square(m.decode(mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)) - x))
    kl = 0.5 * np.mean(np.square(mean) + np.exp(logvar) - 1.0 - logvar)
    obj = np.asarray(x).max(-1, keepdims=True) > -0.98
    assert 0.01 < obj.mean() < 0.3  # frames hold an object and mostly background
    w = np.where(obj, 31.0, 1.0)
    total, mse = loss(params, x, key)
    np.testing.assert_allclose(float(mse), err.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(total), (w * err).mean() / w.mean() + 1e-4 * kl, rtol=1e-5)
    assert abs(float(total) - float(mse) - 1e-4 * kl) > 1e-3 * float(mse)  # the weights change the loss here


def test_loss_curve_png(tmp_path):
    from PIL import Image

    train.loss_curve_png(tmp_path / "loss.png", {"a": list(np.geomspace(1, 0.01, 300)), "b": [0.5] * 10})
    assert Image.open(tmp_path / "loss.png").size == (480, 400)
    probes = [{"step": s, "color": s / 300, "shape": 0.5, "direction": 1 - s / 300} for s in (100, 200, 300)]
    train.loss_curve_png(tmp_path / "probes.png", {"a": list(np.geomspace(1, 0.01, 300))}, probes)
    img = np.asarray(Image.open(tmp_path / "probes.png"))
    assert img.shape == (400, 480, 3)
    assert (np.abs(img[200:].astype(int) - train.PROBE_COLOURS["direction"]).sum(-1) == 0).sum() > 50  # its line


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Tiny random models exported in the diffusers layout, and the Flax modules they came from."""
    from flax import nnx

    from vinf_jax.demo.autoencoder import AutoencoderKL
    from vinf_jax.models.clip_text import CLIPTextConfig, CLIPTextModel
    from vinf_jax.models.unet3d import UNet3D, UNetConfig
    from vinf_jax.models.vae import VAEConfig

    out = tmp_path_factory.mktemp("exp") / "pipe"
    unet_cfg = UNetConfig.from_dict(TINY_UNET, fps_cond=True)
    text_cfg = CLIPTextConfig.from_dict(TINY_TEXT)
    vae = dict(TINY_VAE, scaling_factor=0.5)
    models = (AutoencoderKL(VAEConfig.from_dict(vae), rngs=nnx.Rngs(0)), UNet3D(unet_cfg, rngs=nnx.Rngs(1)),
              CLIPTextModel(text_cfg, rngs=nnx.Rngs(2)))
    train.export(out, *models, unet_cfg, text_cfg, vae, np.dtype("float32"))
    return out, models


def test_export_is_a_diffusers_autoencoder(exported):
    """diffusers' AutoencoderKL loads the exported VAE and encodes/decodes as our Flax modules do."""
    torch = pytest.importorskip("torch")
    from diffusers import AutoencoderKL as TorchAE

    out, (ae, _, _) = exported
    ref = TorchAE.from_pretrained(str(out / "vae")).eval()
    x = train.random_frames(np.random.default_rng(1), 2)[:, ::2, ::2]  # (2, 32, 32, 3)
    with torch.no_grad():
        post = ref.encode(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).latent_dist
        img = ref.decode(post.mean).sample.numpy().transpose(0, 2, 3, 1)
    mean, logvar = ae.encode(x)
    want = post.mean.numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(mean), want, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(np.asarray(logvar), post.logvar.numpy().transpose(0, 2, 3, 1), atol=1e-3)
    np.testing.assert_allclose(np.asarray(ae.decode(mean)), img, atol=1e-4 * np.abs(img).max())


def test_export_converts_back_exactly(exported, tmp_path):
    """The real converter reads the exported folder; every parameter comes back unchanged."""
    from flax import nnx

    from vinf_jax.convert.mapping import flatten_pure
    from vinf_jax.convert.videocrafter2 import convert
    from vinf_jax.loading import load_checkpoint

    out, (ae, unet, text) = exported
    ck = load_checkpoint(convert(None, tmp_path / "ck", base=out))
    pure = lambda m: flatten_pure(nnx.to_pure_dict(nnx.state(m, nnx.Param)))
    for got, module in ((ck.unet.params, unet), (ck.text_encoder.params, text)):
        want = pure(module)
        got = flatten_pure(got)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=k)
    want = {k: v for k, v in pure(ae).items() if not k.startswith(("encoder.", "quant_conv."))}
    got = flatten_pure(ck.vae.params)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=k)
    assert ck.vae.config.scaling_factor == 0.5 and ck.scheduler_config["beta_schedule"] == "scaled_linear"
    assert ck.tokenizer("a red circle moving right").input_ids[1:3] == ck.tokenizer("a red").input_ids[1:3]
    assert json.loads((out / "unet" / "config.json").read_text())["fps_cond"] is True


def test_quick_run_end_to_end(tmp_path):
    """``python -m vinf_jax.demo.train --quick``: both stages, the export, the log and the loss plot, and the
    folder converts with the user's converter; an existing --out is refused."""
    from vinf_jax.convert.videocrafter2 import convert
    from vinf_jax.loading import load_checkpoint

    out = tmp_path / "quick"
    assert train.main(["--out", str(out), "--quick"]) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["preset"]["unet_steps"] == 6 and np.isfinite(log["final"]["unet_loss"])
    assert (out / "loss.png").is_file() and not (tmp_path / ".quick.partial").exists()
    ck = load_checkpoint(convert(None, tmp_path / "ck", base=out))
    assert ck.scheduler_config["prediction_type"] == "v_prediction"
    assert train.main(["--out", str(out), "--quick"]) == 2
