"""The general seam metric and the contact sheet, on constructed videos with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vinf_jax.output.contact_sheet import contact_sheet, sheet_indices, write_contact_sheet
from vinf_jax.output.seams import frame_changes, jsonable, seam_scores, summary_line


def ramp(values) -> np.ndarray:
    """A video whose frame k is uniformly values[k]: frame changes are |differences| of values."""
    return np.broadcast_to(np.asarray(values, np.float32)[:, None, None, None], (len(values), 4, 4, 3)).copy()


def test_known_scores():
    # 3 clips of 4 frames; steps of 0.01 inside clips, jumps of 0.05 and 0.02 at the two seams
    v = [0.00, 0.01, 0.02, 0.03, 0.08, 0.09, 0.10, 0.11, 0.13, 0.14, 0.15, 0.16]
    np.testing.assert_allclose(frame_changes(ramp(v)), np.abs(np.diff(v)), atol=1e-6)
    s = seam_scores(ramp(v), 4)
    np.testing.assert_allclose(s["within_median"], 0.01, atol=1e-6)
    np.testing.assert_allclose(s["seams"], [5.0, 2.0], rtol=1e-4)
    np.testing.assert_allclose([s["median"], s["max"]], [3.5, 5.0], rtol=1e-4)
    assert s["clip_frames"] == 4
    assert "median 3.50x" in summary_line(s) and "2 boundaries" in summary_line(s)


def test_seamless_video_scores_one():
    v = np.linspace(0, 1, 16)
    s = seam_scores(ramp(v), 4)
    np.testing.assert_allclose(s["seams"], [1.0, 1.0, 1.0], rtol=1e-4)


def test_edge_cases():
    one = seam_scores(ramp(np.linspace(0, 1, 8)), 8)
    assert one["seams"] == [] and np.isnan(one["median"]) and summary_line(one) == "seams: none (one clip)"
    static = seam_scores(ramp([0, 0, 1, 1]), 2)  # no change inside clips, a change at the seam
    assert static["seams"] == [float("inf")]
    assert json.loads(json.dumps(jsonable(static)))["seams"] == [None]
    with pytest.raises(ValueError, match="do not split"):
        seam_scores(ramp(np.zeros(7)), 4)


def test_contact_sheet_marks_boundaries(tmp_path):
    from PIL import Image

    assert sheet_indices(64, 16) == [0, 4, 8, 13, 17, 21, 25, 29, 34, 38, 42, 46, 50, 55, 59, 63]
    assert sheet_indices(5, 16) == [0, 1, 2, 3, 4]
    frames = np.zeros((16, 32, 32, 3), np.float32)
    frames[:, 8:24, 8:24] = 1.0
    img = np.asarray(contact_sheet(frames, 4, count=8, per_row=8, height=32))
    # 8 thumbnails 32 wide with 4 px gaps; frames 0,2 | 4,6 | ... so every second gap is a red bar
    assert img.shape == (4 + 12 + 32 + 4, 8 * 32 + 9 * 4, 3)
    gap = lambda i: img[4 + 12 + 10, 4 + i * 36 - 2]  # the middle of the gap before thumbnail i
    assert [tuple(gap(i)) == (220, 30, 30) for i in range(1, 8)] == [False, True, False, True, False, True, False]
    out = tmp_path / "sheet.png"
    write_contact_sheet(out, frames, 4)
    assert Image.open(out).format == "PNG" and not list(tmp_path.glob(".*partial*"))


def test_streamed_scores_equal_whole_video():
    from vinf_jax.output.seams import SeamAccumulator

    rng = np.random.default_rng(0)
    video = rng.uniform(0, 1, (24, 8, 8, 3)).astype(np.float32)
    video8 = (video * 255 + 0.5).astype(np.uint8)
    acc = SeamAccumulator(24, 6, sheet_count=5)
    for chunk in np.split(video8, [5, 13, 16]):  # uneven chunks, as a stream delivers them
        acc.update(chunk)
    whole = seam_scores(video8.astype(np.float32) / 255, 6)
    streamed = acc.scores()
    np.testing.assert_allclose(streamed["seams"], whole["seams"], rtol=1e-5)
    assert streamed["within_median"] == pytest.approx(whole["within_median"], rel=1e-5)
    frames, idx = acc.sheet_video()
    assert idx == [0, 6, 12, 17, 23] and frames.shape == (5, 8, 8, 3)
    np.testing.assert_allclose(frames[1], video8[6] / 255, atol=1e-6)
