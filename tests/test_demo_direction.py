"""The diagnostic variants of ``benchmarks/demo_direction.py`` do what BENCHMARKS.md says they did.

Each variant patches module attributes; ``monkeypatch`` records them first, so they are restored after
each test and no other test sees a patched world or UNet.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import demo_direction  # noqa: E402
from vinf_jax.demo import world  # noqa: E402
from vinf_jax.models import temporal  # noqa: E402


@pytest.fixture
def patched(monkeypatch):
    """Apply variants with every attribute they touch restored afterwards."""
    from vinf_jax.demo import train

    for name in ("TRAIL", "THRESHOLD", "EDGE", "COLORS", "SHAPES", "WORDS", "SPEED", "LANE_WIDTH", "RADIUS", "HALF_SIDE",
                 "DIRECTIONS"):
        monkeypatch.setattr(world, name, getattr(world, name))
    monkeypatch.setattr(train, "video_batches", train.video_batches)
    monkeypatch.setattr(temporal.TransformerTemporal, "__init__", temporal.TransformerTemporal.__init__)
    return lambda *names: [demo_direction.VARIANTS[n]() for n in names]


def _attention_reversal_gap(frames: int = 6) -> float:
    """|f(x reversed in time) reversed - f(x)| of one temporal attention layer with random weights."""
    m = temporal.TransformerTemporal(16, 2, 8, 4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (frames, 3, 3, 16))
    ops = temporal.VanillaTemporal(frames)
    return float(np.abs(m(x[::-1], ops)[::-1] - m(x, ops)).max())


def _param_tree():
    return jax.tree_util.tree_structure(nnx.to_pure_dict(nnx.state(
        temporal.TransformerTemporal(16, 2, 8, 4, rngs=nnx.Rngs(0)), nnx.Param)))


def test_frame_positions_make_temporal_attention_see_frame_order(patched):
    # diffusers' temporal attention has no frame positions: reversing the frames reverses its output
    assert _attention_reversal_gap() < 1e-5
    before = _param_tree()
    patched("frame-positions")
    assert _attention_reversal_gap() > 1e-2
    # the same parameters under the same paths: the trainer, probes and exporter handle it unchanged
    assert _param_tree() == before


def test_strong_trail_keeps_the_detector_right(patched):
    patched("strong-trail")
    for seed in range(8):
        s = world.scene_from_seed(seed)
        dets = world.detect_video(world.render(s, 8, 12))
        assert all(d.found and d.color == s.color and d.shape == s.shape for d in dets)
        assert world.clip_direction(dets) == s.direction
        # the trail is half as bright as the object, and below the detector's object threshold
        f = world.render(world.Scene(s.shape, s.color, "right", 32.0, 32.0), 1, 12)[0].max(-1)
        assert 0.4 < f[32, 32 - 9] < world.THRESHOLD < f[32, 32]


def test_static_world_stands_still_and_points_its_trail(patched):
    patched("strong-trail", "static")
    s = world.Scene("circle", "red", "right", 20.0, 30.0)
    np.testing.assert_array_equal(world.trajectory(s, 5, 16), [[20.0, 30.0]] * 5)
    right, left = (world.render(world.Scene("circle", "red", d, 32.0, 32.0), 1, 16)[0].max(-1) for d in ("right", "left"))
    assert right[32, 32 - 9] > 0.4 and right[32, 32 + 9] == 0  # the trail behind (left of) an object "moving right"
    np.testing.assert_array_equal(left, right[:, ::-1])


def test_direction_only_and_slow_worlds(patched):
    patched("direction-only", "slow")
    assert world.all_prompts() == [f"a red circle moving {d}" for d in sorted(world.DIRECTIONS)]
    c = world.trajectory(world.Scene("circle", "red", "right", 20.0, 30.0), 3, 16)
    np.testing.assert_allclose(np.diff(c[:, 0]), 0.5)  # 8 px/s at 16 fps


def test_big_objects_keep_the_detector_right(patched):
    patched("big")
    s = world.Scene("square", "green", "left", 20.0, 30.0)
    assert (world.render(s, 1, 16)[0].max(-1) > world.THRESHOLD).sum() == 28 * 28  # side 28 centred on a pixel corner
    for seed in range(8):
        s = world.scene_from_seed(seed)
        dets = world.detect_video(world.render(s, 8, 12))
        assert all(d.found and d.color == s.color and d.shape == s.shape for d in dets)
        assert world.clip_direction(dets) == s.direction


def test_lanes_keep_the_draws_and_move_the_start(patched):
    """``lanes``: the same draws as the shipped world, with the start moved into the direction's lane; the
    shipped world leaves right movers in any row."""
    free = [world.scene_from_seed(s) for s in range(200)]
    rows = [s.y0 for s in free if s.direction in ("right", "left")]
    assert min(rows) < 8 and max(rows) > 56 and any(24 < y < 40 for y in rows)
    patched("lanes")
    laned = [world.scene_from_seed(s) for s in range(200)]
    assert [(a.shape, a.color, a.direction) for a in laned] == [(b.shape, b.color, b.direction) for b in free]
    assert all(40 <= s.y0 <= 56 for s in laned if s.direction == "right")
    assert all(8 <= s.x0 <= 24 for s in laned if s.direction == "down")


def test_lane_accuracy_only_in_a_world_with_lanes(patched):
    """``demo_prompts.py``'s lane column: None in the shipped world; with lanes, 1 for clips rendered in their
    prompt's lane and 0 for the same clips under the opposite direction word (the other half)."""
    from benchmarks.demo_prompts import in_lane

    prompts = ["a red circle moving right", "a blue square moving up"]
    frames = lambda: np.concatenate([world.render(world.Scene(w["shape"], w["color"], w["direction"],
                                                              *world.place(w["direction"], (20.0, 30.0))), 8, 16)
                                     for w in map(world.parse_prompt, prompts)])
    assert in_lane(frames(), prompts, 8) is None
    patched("lanes")
    assert in_lane(frames(), prompts, 8) == 1.0
    assert in_lane(frames(), ["a red circle moving left", "a blue square moving down"], 8) == 0.0


def test_zero_snr_reaches_the_trainer_and_its_export(patched, monkeypatch):
    from vinf_jax.demo import train

    monkeypatch.setitem(train.SCHEDULER, "rescale_betas_zero_snr", False)  # the key goes again afterwards
    patched("zero-snr")
    assert train.SCHEDULER["rescale_betas_zero_snr"] is True
    assert train.alphas_cumprod()[-1] == 0  # the default argument is the same (patched) dict


def test_unknown_variant_is_refused(capsys):
    assert demo_direction.main(["bogus", "train"]) == 2
    assert "strong-trail" in capsys.readouterr().err


def test_text_differences_are_causal_and_name_the_changed_word():
    """demo_diagnose.py text: a caption with one word changed differs from the base caption only from that
    word's token on (the text encoder is causal), and at that token."""
    from benchmarks import demo_diagnose
    from vinf_jax.loading import load_checkpoint
    from vinf_jax.demo.model import checkpoint_path

    diffs = demo_diagnose.text_differences(load_checkpoint(checkpoint_path()))
    for word, first in (("colour", 2), ("shape", 3), ("direction", 5)):
        assert diffs[word][:first] == [0.0] * first, word
        assert diffs[word][first] > 0.05, word


def test_one_way_world_moves_everything_right(patched):
    patched("one-way")
    scenes = [world.scene_from_seed(s) for s in range(20)]
    assert {s.direction for s in scenes} == {"right"} and "left" not in world.WORDS
    assert all(world.clip_direction(world.detect_video(world.render(s, 8, 16))) == "right" for s in scenes[:4])


def test_curriculum_draws_right_movers_first_then_every_direction(patched):
    from vinf_jax.demo import train

    patched("curriculum")
    scenes = [world.scene_from_seed(s) for s in range(40)]
    latents = np.zeros((40, 10, 1, 1, 1), np.float32)
    draw = train.video_batches(latents, scenes, np.full(40, 16.0, np.float32), {"clip_frames": 8, "direction_groups": 1})
    rng = np.random.default_rng(0)
    first = [world.parse_prompt(c)["direction"] for _ in range(demo_direction.CURRICULUM_STEPS) for c in draw(rng, 6)[1]]
    later = [world.parse_prompt(c)["direction"] for _ in range(50) for c in draw(rng, 6)[1]]
    assert set(first) == {"right"} and set(later) == set(world.DIRECTIONS)


@pytest.mark.parametrize("variant", ["", "strong-trail"])
def test_trail_direction_reads_true_frames(patched, variant):
    """demo_diagnose.py trail: on the world's own frames (static world, faint and strong trail) the trail says the
    scene's direction every time; an empty frame says nothing."""
    from benchmarks import demo_diagnose

    patched("static", *filter(None, [variant]))
    for seed in range(24):
        s = world.scene_from_seed(seed)
        assert demo_diagnose.trail_direction(world.render(s, 1, 16)[0]) == s.direction, seed
    assert demo_diagnose.trail_direction(np.zeros((64, 64, 3), np.float32)) is None
