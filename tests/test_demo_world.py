"""The demo world: deterministic from a seed, any length, fps sets the speed, the object wraps around
the borders so captions hold for every frame; the detector finds what was rendered, and a perfect
model of the world (its own trajectories through the detector) passes every check of the demo."""

from __future__ import annotations

import numpy as np
import pytest

from vinf_jax.demo import world
from vinf_jax.demo.evaluate import evaluate


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
        c = world.trajectory(s, 3, fps)
        np.testing.assert_allclose(np.diff(c[:, 0]), world.SPEED / fps)
        np.testing.assert_allclose(c[:, 1], 30.0)


def test_wraps_around_the_border():
    s = world.Scene("square", "green", "left", 1.0, 30.0)  # centre 1 px from the left border
    c = world.trajectory(s, 3, world.SPEED / 2)  # 2 px per frame to the left
    np.testing.assert_allclose(c[:, 0], [1.0, world.SIZE - 1.0, world.SIZE - 3.0])
    # while crossing, the object is drawn on both sides; its area is that of an uncut square
    f = world.render(s, 1, 8)[0].max(-1)
    assert f[30, 0] > 0.8 and f[30, world.SIZE - 1] > 0.8 and f[30, world.SIZE // 2] == 0
    inside = world.render(world.Scene("square", "green", "left", 32.0, 30.0), 1, 8)[0].max(-1)
    np.testing.assert_allclose(f.sum(), inside.sum(), rtol=1e-6)
    # the caption names the one direction of every frame
    assert world.caption(s) == "a green square moving left"
    assert len(world.all_prompts()) == 32 and "a blue circle moving up" in world.all_prompts()


@pytest.mark.parametrize("direction", list(world.DIRECTIONS))
def test_objects_keep_to_the_right_of_their_way(direction, monkeypatch):
    """With lanes (``world.LANE_WIDTH``) the object stays in the half of the frame on its right-hand side
    (y grows downwards), in its lane, for every frame of a long video; so the clips of different directions
    differ in where, not only how, they move."""
    monkeypatch.setattr(world, "LANE_WIDTH", 16.0)
    dx, dy = world.DIRECTIONS[direction]
    right_hand = np.array([-dy, dx])  # the direction turned a quarter clockwise on screen
    half = {(0, 1): "lower", (0, -1): "upper", (-1, 0): "left", (1, 0): "right"}[tuple(int(v) for v in right_hand)]
    axis = 1 if half in ("lower", "upper") else 0
    rng = np.random.default_rng(0)
    seen = 0
    while seen < 20:
        s = world.random_scene(rng)
        if s.direction != direction:
            continue
        seen += 1
        across = world.trajectory(s, 200, 8)[:, axis]
        np.testing.assert_allclose(across, across[0])  # it never leaves its lane
        far_side = half in ("lower", "right")
        reach = max(world.RADIUS, world.HALF_SIDE)
        assert (across[0] - reach >= world.SIZE / 2) if far_side else (across[0] + reach <= world.SIZE / 2), (s, half)
    # the detector sees the same: every frame's centroid is in that half
    s = world.Scene("circle", "red", direction, *world.place(direction, (5.0, 60.0)))
    c = np.array([d.centroid for d in world.detect_video(world.render(s, 40, 8))])
    assert np.all((c[:, axis] > world.SIZE / 2) == (half in ("lower", "right")))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heading_keeps_the_spot_and_changes_the_way(seed):
    """world.heading: the new scene's object is where the old one is at the chosen frame, and moves the new way
    at the world's speed; its frame there is the old frame with the trail turned (same pixels above the trail)."""
    s = world.scene_from_seed(seed)
    for d in world.DIRECTIONS:
        h = world.heading(s, d, 21, 12.0)
        assert (h.direction, h.shape, h.color) == (d, s.shape, s.color)
        np.testing.assert_allclose(world.wrapped_step(world.trajectory(s, 1, 12.0, 21)[0],
                                                      world.trajectory(h, 1, 12.0, 21)[0]), [0, 0], atol=1e-9)
        assert world.clip_direction(world.detect_video(world.render(h, 8, 12.0, start=17))) == d
        a, b = world.render(s, 1, 12.0, start=21)[0], world.render(h, 1, 12.0, start=21)[0]
        above = lambda f: f.max(-1) > world.THRESHOLD
        np.testing.assert_array_equal(above(a), above(b))


def test_wrapped_step():
    np.testing.assert_allclose(world.wrapped_step([63.0, 10.0], [1.0, 8.0]), [2.0, -2.0])
    np.testing.assert_allclose(world.wrapped_step([1.0, 5.0], [63.0, 5.0]), [-2.0, 0.0])


@pytest.mark.parametrize("seed", range(6))
def test_detector_finds_colour_shape_and_centre(seed):
    s = world.scene_from_seed(seed)
    frames = world.render(s, 8, 12)
    centres = world.trajectory(s, 8, 12)
    dets = world.detect_video(frames)
    assert all(d.found and d.color == s.color and d.shape == s.shape for d in dets)
    # anti-aliased rendering: the brightness-weighted circular mean is the centre to a small fraction
    # of a pixel (edge pixels dimmer than world.EDGE are left out; where the trail brightens the back
    # edge past EDGE they are not, which shifts it backwards by < 0.2 px, the same in every frame) ...
    got = np.array([d.centroid for d in dets])
    np.testing.assert_allclose(world.wrapped_step(got, centres), 0, atol=0.2)
    # ... and the steps between frames (what the direction and seam measures use) to the same 0.2 px
    np.testing.assert_allclose(world.wrapped_step(got[:-1], got[1:]), world.wrapped_step(centres[:-1], centres[1:]), atol=0.2)
    assert world.clip_direction(dets) == s.direction
    # uint8 frames (as read back from an mp4) work too
    d8 = world.detect((frames[0] * 255).round().astype(np.uint8))
    assert d8.found and d8.color == s.color and d8.shape == s.shape


@pytest.mark.parametrize("shape", world.SHAPES)
def test_detector_across_the_corner(shape):
    # centred on the corner: the object is cut in four pieces at the four corners of the frame
    s = world.Scene(shape, "blue", "up", 0.3, 63.4)
    d = world.detect(world.render(s, 1, 16)[0])
    assert d.found and d.color == "blue" and d.shape == shape
    np.testing.assert_allclose(world.wrapped_step(d.centroid, (0.3, 63.4)), 0, atol=0.2)  # see above
    dets = world.detect_video(world.render(s, 8, 16))  # upwards, across the top border
    assert world.clip_direction(dets) == "up"


def test_detector_on_empty_and_noise():
    assert not world.detect(np.zeros((64, 64, 3), np.float32)).found
    noise = np.random.default_rng(0).uniform(0, 0.3, (64, 64, 3)).astype(np.float32)
    assert not world.detect(noise).found


def test_centroid_seams_known_answer():
    # 3 clips of 4 frames: the object steps 1 px inside clips, jumps 5 px at the first seam and 1 px at
    # the second; positions cross the right border, where the jump is still the short way round
    xs = [52, 53, 54, 55, 60, 61, 62, 63, 0, 1, 2, 3]
    frames = np.stack([world.render(world.Scene("circle", "red", "right", float(x), 30.0), 1, 8)[0] for x in xs])
    cs = world.centroid_seams(world.detect_video(frames), 4)
    np.testing.assert_allclose(cs["seams"], [5.0, 1.0], atol=0.02)
    np.testing.assert_allclose(cs["within_median"], 1.0, atol=0.02)
    np.testing.assert_allclose(cs["ratio"], 3.0, atol=0.05)  # median of (5, 1) over 1


def test_prompt_parsing():
    assert world.parse_prompt("A Red circle, moving RIGHT.") == {"color": "red", "shape": "circle", "direction": "right"}
    assert world.parse_prompt("a dog") == {"color": None, "shape": None, "direction": None}


# ------------------------------------------------------------------ a perfect model scores ~100 %

def perfect_clips(prompts, seed: int, frames: int = 8, fps: float = 16) -> np.ndarray:
    """What a perfect base model makes for single clips: one random scene per prompt, frames stacked."""
    rng = np.random.default_rng(seed)
    out = []
    for p in prompts:
        w = world.parse_prompt(p)
        x0, y0 = world.place(w["direction"], rng.uniform(0, world.SIZE, 2))
        out.append(world.render(world.Scene(w["shape"], w["color"], w["direction"], x0, y0), frames, fps))
    return np.concatenate(out)


@pytest.mark.parametrize("fps", world.FPS_CHOICES)
def test_perfect_model_single_clips(fps):
    prompts = world.all_prompts()
    for seed in range(3):
        r = evaluate(perfect_clips(prompts, seed, fps=fps), prompts, len(prompts))
        assert min(r["found"], r["color"], r["shape"], r["direction"]) >= 0.98, (seed, r)


def test_perfect_model_demo_video():
    """configs/demo.json's video made perfectly: 8 clips x 8 frames at 16 fps, the first prompt for clips
    0-3, then the second from where the object was (Video-Infinity's goal; with lanes it crosses to the
    other lane, one jump at one of the seven seams); independent clips start anywhere (in their lane).
    Every measure the demo test asserts is met, by a wide margin."""
    prompts, n, f = ["a red circle moving right", "a blue square moving left"], 8, 8
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x0, y0 = world.place("right", rng.uniform(0, world.SIZE, 2))
        first = world.render(world.Scene("circle", "red", "right", x0, y0), n * f // 2, 16)
        end_x, end_y = world.trajectory(world.Scene("circle", "red", "right", x0, y0), 1, 16, start=n * f // 2)[0]
        if world.lane("left") is not None:  # it crosses to the other lane
            end_y = world.SIZE - end_y
        second = world.render(world.Scene("square", "blue", "left", end_x, end_y), n * f // 2, 16)
        vi = evaluate(np.concatenate([first, second]), prompts, n)
        assert min(vi["found"], vi["color"], vi["shape"], vi["direction"]) >= 0.98, vi
        assert vi["centroid_ratio"] <= 1.1, vi["centroid_ratio"]  # a seam is one ordinary step
        independent = evaluate(perfect_clips([prompts[c * 2 // n] for c in range(n)], seed + 10), prompts, n)
        assert min(independent["color"], independent["direction"]) >= 0.98, independent
        assert independent["centroid_ratio"] >= 3 * vi["centroid_ratio"], (vi["centroid_ratio"], independent)
