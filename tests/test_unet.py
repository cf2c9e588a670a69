"""vinf_jax.models.unet3d + convert.videocrafter2 + load_unet against diffusers' UNet3DConditionModel."""

import numpy as np
import pytest

from unet_refs import save_tiny_unet, tiny_unet, torch_unet_out

TOL = 1e-4  # max |diff| <= TOL * max |ref|, float32 on the CPU


@pytest.fixture(scope="module", params=["four_blocks", "two_blocks"])
def converted(request, tmp_path_factory):
    from vinf_jax.convert.videocrafter2 import convert
    from vinf_jax.loading import load_unet

    tmp = tmp_path_factory.mktemp(request.param)
    model = tiny_unet(request.param)
    save_tiny_unet(model, tmp / "unet")
    convert(tmp / "unet", tmp / "ckpt")
    return model, load_unet(tmp / "ckpt")


CASES = [  # (batch, frames, height, width, timestep, fps)
    (1, 4, 16, 16, 999, 24),
    (2, 3, 8, 24, 1, 8),
    (1, 6, 24, 8, 500, 12),
]


@pytest.mark.parametrize("batch,frames,h,w,t,fps", CASES)
def test_unet_matches_diffusers(converted, batch, frames, h, w, t, fps):
    model, unet = converted
    rng = np.random.default_rng(frames * 7 + h)
    sample = rng.standard_normal((batch, 4, frames, h, w)).astype(np.float32)
    ctx = rng.standard_normal((batch, 5, unet.config.cross_attention_dim)).astype(np.float32)
    ref = torch_unet_out(model, sample, t, ctx, fps)
    out = np.asarray(unet(sample, t, ctx, fps=fps))
    assert out.shape == ref.shape
    err = np.abs(out - ref).max()
    assert err <= TOL * np.abs(ref).max(), (err, np.abs(ref).max())


def test_fps_and_temporal_paths_are_visible(converted):
    """The comparison above would be blind if fps or the temporal layers did nothing."""
    _, unet = converted
    rng = np.random.default_rng(1)
    sample = rng.standard_normal((1, 4, 4, 8, 8)).astype(np.float32)
    ctx = rng.standard_normal((1, 5, unet.config.cross_attention_dim)).astype(np.float32)
    a = np.asarray(unet(sample, 10, ctx, fps=24))
    assert np.abs(a - np.asarray(unet(sample, 10, ctx, fps=8))).max() > 1e-3
    moved = sample.copy()
    moved[:, :, 3] += 1.0  # a change in the last frame must reach the first through the temporal layers
    assert np.abs(a[:, :, 0] - np.asarray(unet(moved, 10, ctx, fps=24))[:, :, 0]).max() > 1e-4


def test_full_size_parameter_count():
    """The full VideoCrafter2 config builds abstractly with 1.41e9 parameters (+-1%)."""
    import json
    from pathlib import Path

    import jax

    from vinf_jax.loading import abstract_params
    from vinf_jax.models.unet3d import UNetConfig

    ref = json.loads((Path(__file__).parent / "data" / "videocrafter2_full.json").read_text())
    cfg = UNetConfig.from_dict({k: v for k, v in ref["unet"].items() if not k.startswith("_")})
    abstract = abstract_params("unet", cfg)
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract))
    assert abs(n - 1.41e9) <= 0.01 * 1.41e9, n
    assert n == 1_413_284_420  # the count the reference notes made on the diffusers module
