"""How visible the seams between clips are, for any generated video.

Video-Infinity exists so that a long video made of ``N`` clips shows no seam where one clip ends
and the next begins. The measure here needs nothing but the frames: the change from frame ``k`` to
``k+1`` (mean absolute difference over pixels and channels) across each clip boundary, divided by
the median of that change between neighbouring frames *inside* clips. A seamless video scores about
1 at every boundary (a boundary looks like any other step); independent clips score far higher.
"""

from __future__ import annotations

import numpy as np


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """(T-1,) mean |frame[k+1] - frame[k]| of frames (T, H, W, C), in the frames' units."""
    f = np.asarray(frames, np.float32)
    return np.abs(f[1:] - f[:-1]).reshape(f.shape[0] - 1, -1).mean(-1)


def seam_scores(frames: np.ndarray, clip_frames: int) -> dict:
    """Per-boundary seam scores of a video whose clips are ``clip_frames`` frames long.

    Returns ``{"clip_frames", "within_median", "seams": [score per boundary], "median", "max"}``;
    ``within_median`` is the median frame-to-frame change inside clips (the unit of the scores).
    A video of one clip has no seams (empty list, NaN summary); a static video (no change inside
    clips) scores inf at a boundary that changes and NaN at one that does not.
    """
    frames = np.asarray(frames)
    t = frames.shape[0]
    if clip_frames < 1 or t % clip_frames:
        raise ValueError(f"{t} frames do not split into clips of {clip_frames}")
    return _scores(frame_changes(frames), t, clip_frames)


def _scores(d: np.ndarray, t: int, clip_frames: int) -> dict:
    boundary = (np.arange(1, t) % clip_frames) == 0  # pair (k, k+1) crosses a seam when k+1 starts a clip
    within = float(np.median(d[~boundary])) if (~boundary).any() else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = [float(x) for x in d[boundary] / np.float64(within)]
    finite = [s for s in scores if not np.isnan(s)]
    return {"clip_frames": int(clip_frames), "within_median": within, "seams": scores,
            "median": float(np.median(finite)) if finite else float("nan"),
            "max": float(np.max(finite)) if finite else float("nan")}


def summary_line(scores: dict) -> str:
    """``seams: median 1.1x, max 1.9x the within-clip change (7 boundaries)`` for the CLI."""
    n = len(scores["seams"])
    if not n:
        return "seams: none (one clip)"
    return (f"seams: median {scores['median']:.2f}x, max {scores['max']:.2f}x the within-clip frame change "
            f"({n} boundaries)")


def jsonable(scores: dict) -> dict:
    """``scores`` with NaN/inf as None (strict JSON has neither)."""
    fix = lambda x: x if isinstance(x, (int, str)) or (isinstance(x, float) and np.isfinite(x)) else None
    return {k: ([fix(x) for x in v] if isinstance(v, list) else fix(v)) for k, v in scores.items()}


class SeamAccumulator:
    """The seam scores and contact-sheet frames of a video that streams by in chunks (in order).

    ``update(chunk)`` takes frames (n, H, W, 3), uint8 or float in [0, 1]; it keeps one previous frame,
    one change per frame pair and the few frames of the contact sheet, so memory does not grow with
    the video. ``scores()`` equals ``seam_scores`` of the whole video.
    """

    def __init__(self, total_frames: int, clip_frames: int, sheet_count: int = 16):
        from vinf_jax.output.contact_sheet import sheet_indices

        self.total, self.clip_frames = total_frames, clip_frames
        self._want = set(sheet_indices(total_frames, sheet_count))
        self.sheet_frames: dict[int, np.ndarray] = {}
        self._changes: list[float] = []
        self._prev = None
        self._seen = 0

    def update(self, chunk: np.ndarray) -> None:
        f = np.asarray(chunk)
        f = f.astype(np.float32) / 255.0 if f.dtype == np.uint8 else f.astype(np.float32)
        if self._prev is not None:
            f_all = np.concatenate([self._prev[None], f])
        else:
            f_all = f
        if f_all.shape[0] > 1:
            self._changes.extend(frame_changes(f_all).tolist())
        for i in range(f.shape[0]):
            if self._seen + i in self._want:
                self.sheet_frames[self._seen + i] = f[i]
        self._seen += f.shape[0]
        self._prev = f[-1]

    def scores(self) -> dict:
        return _scores(np.asarray(self._changes, np.float32), self._seen, self.clip_frames)

    def sheet_video(self) -> tuple[np.ndarray, list[int]]:
        idx = sorted(self.sheet_frames)
        return np.stack([self.sheet_frames[i] for i in idx]), idx
