"""The diffusers layouts people have: the VideoCrafter2 port's UNet under either of its class names,
and ModelScope text-to-video-ms-1.7b / zeroscope_v2 (the same UNet without the fps embedding)."""

import json
import warnings

import numpy as np
import pytest
import torch

from unet_refs import TINY_CONFIGS, randomize_, tiny_unet, torch_unet_out

TOL = 1e-4


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    from vinf_jax.convert.videocrafter2 import convert_unet

    root = tmp_path_factory.mktemp("port")
    model = tiny_unet("two_blocks")
    model.unet.save_pretrained(root / "unet")
    return model, convert_unet(root / "unet"), root


@pytest.mark.parametrize("class_name", ["UNetVideoCrafter", "UNet3DVideoCrafterConditionModel"])
def test_port_class_names(port, class_name, tmp_path):
    """The port's config.json may name its own class and say fps_cond: the same conversion."""
    import shutil

    from vinf_jax.convert.mapping import flatten_pure
    from vinf_jax.convert.videocrafter2 import convert_unet

    _, (cfg, params), root = port
    folder = shutil.copytree(root / "unet", tmp_path / "unet")
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**raw, "_class_name": class_name, "fps_cond": True}))
    cfg2, params2 = convert_unet(folder)
    assert cfg2 == cfg and cfg.fps_cond  # without the key, fps_cond comes from the weights
    a, b = flatten_pure(params), flatten_pure(params2)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def zeroscope(tmp_path_factory):
    """A tiny ModelScope / zeroscope UNet: diffusers' UNet3DConditionModel, no fps embedding."""
    from diffusers import UNet3DConditionModel

    from vinf_jax.convert.videocrafter2 import convert_unet

    torch.manual_seed(1)
    unet = UNet3DConditionModel(**TINY_CONFIGS["two_blocks"])
    randomize_(unet, seed=1)
    folder = tmp_path_factory.mktemp("zeroscope") / "unet"
    unet.eval().save_pretrained(folder)
    assert "fps_cond" not in json.loads((folder / "config.json").read_text())
    return unet, convert_unet(folder)


def test_zeroscope_unet_matches_diffusers(zeroscope):
    from vinf_jax.loading import Model, UNetFunction

    unet, (cfg, params) = zeroscope
    assert not cfg.fps_cond and "fps_embedding" not in params
    rng = np.random.default_rng(3)
    sample = rng.standard_normal((1, 4, 3, 8, 8)).astype(np.float32)
    ctx = rng.standard_normal((1, 5, 10)).astype(np.float32)
    with torch.no_grad():
        want = unet(torch.from_numpy(sample), 700, torch.from_numpy(ctx)).sample.numpy()
    got = UNetFunction(Model("unet", cfg, params), "float32")(sample, 700, ctx, fps=8)  # fps has nothing to feed
    assert np.abs(got - want).max() <= TOL * np.abs(want).max()
    assert np.abs(got - torch_unet_out(tiny_unet("two_blocks", seed=1), sample, 700, ctx, 8)).max() > 1e-3


def test_a_set_fps_on_a_zeroscope_unet_is_warned_once(zeroscope):
    from vinf_jax import tiny
    from vinf_jax.loading import Model
    from vinf_jax.pipeline import VideoInfinityPipeline

    _, (cfg, params) = zeroscope
    ref = VideoInfinityPipeline.tiny_random(devices=1)
    pipe = VideoInfinityPipeline(Model("unet", cfg, params), ref.text_encoder, ref.vae, tiny.WordTokenizer(),
                                 tiny.SCHEDULER, devices=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [pipe._fps_argument(24), pipe._fps_argument(8), pipe._fps_argument(None)] == [24, 8, 24]
    assert [str(w.message) for w in caught] == [
        "fps=24: this checkpoint's UNet has no fps conditioning (ModelScope / zeroscope layout); generating without it"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref._fps_argument(24)  # VideoCrafter2 has fps conditioning: nothing to say


def test_auto_scheduler_of_a_zeroscope_unet_is_its_scheduler_config(zeroscope, port):
    """ModelScope / zeroscope (no fps embedding, never run by the released code) samples what its own
    scheduler config names; the port's UNet on the same config samples the released sde-dpmsolver++.
    The pipeline records it for the sidecar."""
    from test_schedulers import ZEROSCOPE
    from vinf_jax import tiny
    from vinf_jax.loading import Model
    from vinf_jax.pipeline import VideoInfinityPipeline

    ref = VideoInfinityPipeline.tiny_random(devices=1)
    for (cfg, params), kind in ((zeroscope[1], "ddim"), (port[1], "sde-dpmsolver++")):
        pipe = VideoInfinityPipeline(Model("unet", cfg, params), ref.text_encoder, ref.vae, tiny.WordTokenizer(),
                                     ZEROSCOPE, devices=1)
        assert pipe.resolve_scheduler("auto")[0].kind == kind
        assert pipe.resolve_scheduler("dpmsolver++")[0].kind == "dpmsolver++"  # a name is honoured as given
