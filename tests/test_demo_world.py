"""The demo world: deterministic from a seed, any length, fps sets the speed; the detector finds
what was rendered."""

from __future__ import annotations

import numpy as np
import pytest

from vinf_jax.demo import world


def test_same_seed_same_video_any_length():
    s = world.scene_from_seed(7)
    assert s == world.scene_from_seed(7) and s != world.scene_from_seed(8)
    long = world.render(s, 40, 12)
    assert long.shape == (40, world.SIZE, world.SIZE, 3) and long.dtype == np.float32
    np.testing.assert_array_equal(long, world.render(world.scene_from_seed(7), 40, 12))
    # a window starting at frame 10 is the same frames as frames 10.. of the long video
    np.testing.assert_array_equal(world.render(s, 20, 12, start=10), long[10:30])


def test_speed_per_frame_is_speed_over_fps():
    s = world.Scene("circle", "red", "right", 20.0, 30.0)
    for fps in (8, 16):
        c, _ = world.trajectory(s, 3, fps)
        np.testing.assert_allclose(np.diff(c[:, 0]), world.SPEED / fps)
        np.testing.assert_allclose(c[:, 1], 30.0)


def test_bounces_off_the_border():
    s = world.Scene("square", "green", "left", world.HALF_SIDE + 1.0, 30.0)  # 1 px from the left wall
    c, signs = world.trajectory(s, 3, 8)  # 2 px per frame
    np.testing.assert_allclose(c[:, 0], [world.HALF_SIDE + 1, world.HALF_SIDE + 1, world.HALF_SIDE + 3])
    assert list(signs[:, 0]) == [-1, 1, 1]
    # the caption names the direction of most frames
    assert world.caption(s, 3, 8) == "a green square moving right"
    assert world.caption(world.Scene("circle", "blue", "up", 30.0, 40.0), 8, 16) == "a blue circle moving up"


@pytest.mark.parametrize("seed", range(6))
def test_detector_finds_colour_and_centre(seed):
    s = world.scene_from_seed(seed)
    frames = world.render(s, 8, 12)
    centres, _ = world.trajectory(s, 8, 12)
    dets = world.detect_video(frames)
    assert all(d.found and d.color == s.color for d in dets)
    # anti-aliased rendering: the brightness-weighted centroid is the centre to a small fraction of a
    # pixel (edge pixels dimmer than world.EDGE are left out, which shifts it by < 0.1 px)
    np.testing.assert_allclose([d.centroid for d in dets], centres, atol=0.1)
    assert world.clip_direction(dets) == world.caption(s, 8, 12).split()[-1]
    # uint8 frames (as read back from an mp4) work too
    d8 = world.detect((frames[0] * 255).round().astype(np.uint8))
    assert d8.found and d8.color == s.color


def test_detector_on_empty_and_noise():
    assert not world.detect(np.zeros((64, 64, 3), np.float32)).found
    noise = np.random.default_rng(0).uniform(0, 0.3, (64, 64, 3)).astype(np.float32)
    assert not world.detect(noise).found


def test_centroid_seams_known_answer():
    # 3 clips of 4 frames: the object steps 1 px inside clips, jumps 5 px at the first seam and 1 px at the second
    xs = [10, 11, 12, 13, 18, 19, 20, 21, 22, 23, 24, 25]
    frames = np.stack([world.render(world.Scene("circle", "red", "right", float(x), 30.0), 1, 8)[0] for x in xs])
    cs = world.centroid_seams(world.detect_video(frames), 4)
    np.testing.assert_allclose(cs["seams"], [5.0, 1.0], atol=0.02)
    np.testing.assert_allclose(cs["within_median"], 1.0, atol=0.02)
    np.testing.assert_allclose(cs["ratio"], 3.0, atol=0.05)  # median of (5, 1) over 1


def test_prompt_parsing():
    assert world.parse_prompt("A Red circle, moving RIGHT.") == {"color": "red", "shape": "circle", "direction": "right"}
    assert world.parse_prompt("a dog") == {"color": None, "shape": None, "direction": None}
