"""The synthetic world of the demo: one shape of one colour moving at constant speed on black.

A scene is a shape (circle, square), a colour, a direction (right, left, down, up) and a start
position. The object moves ``SPEED`` pixels per *second* along that axis and bounces off the
borders, so its step per frame is ``SPEED / fps``: the fps conditioning of the UNet has a meaning.
Everything is a function of the scene (or of a seed), so any frame range of any length can be
rendered, and the same seed always gives the same video.

:func:`detect` is the other direction: colour and centroid of the object in a frame. Tests and
benchmarks use it to check generated videos against their prompts.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SIZE = 64  # frames are SIZE x SIZE
RADIUS = 7.0  # circle radius; the square has the same area-ish half side
HALF_SIDE = 6.0
SPEED = 16.0  # pixels per second
COLORS = {"red": (0.95, 0.1, 0.1), "green": (0.1, 0.85, 0.15), "blue": (0.15, 0.3, 1.0),
          "yellow": (0.95, 0.85, 0.1)}
SHAPES = ("circle", "square")
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}  # (dx, dy), y grows downwards
FPS_CHOICES = (8, 12, 16, 24)
WORDS = ("a", "moving") + tuple(COLORS) + SHAPES + tuple(DIRECTIONS)


@dataclasses.dataclass(frozen=True)
class Scene:
    shape: str
    color: str
    direction: str
    x0: float  # centre at frame 0, pixels
    y0: float

    @property
    def extent(self) -> float:
        return RADIUS if self.shape == "circle" else HALF_SIDE


def random_scene(rng: np.random.Generator) -> Scene:
    shape = SHAPES[rng.integers(len(SHAPES))]
    ext = RADIUS if shape == "circle" else HALF_SIDE
    x0, y0 = rng.uniform(ext, SIZE - ext, size=2)
    return Scene(shape, list(COLORS)[rng.integers(len(COLORS))], list(DIRECTIONS)[rng.integers(len(DIRECTIONS))],
                 float(x0), float(y0))


def scene_from_seed(seed: int) -> Scene:
    return random_scene(np.random.default_rng(seed))


def _bounce(p0: float, v: float, k: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Position and sign of velocity at frames ``k`` of a point moving at ``v`` per frame between walls."""
    span = hi - lo
    u = np.mod(p0 - lo + v * k, 2 * span)
    forward = u <= span
    return lo + np.where(forward, u, 2 * span - u), np.where(forward, 1, -1) * np.sign(v)


def trajectory(scene: Scene, frames: int, fps: float, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centres (frames, 2) as (x, y) and velocity signs (frames, 2) for frames start..start+frames-1."""
    k = np.arange(start, start + frames, dtype=np.float64)
    dx, dy = DIRECTIONS[scene.direction]
    v = SPEED / fps
    lo, hi = scene.extent, SIZE - scene.extent
    x, sx = _bounce(scene.x0, v * dx if dx else 0.0, k, lo, hi) if dx else (np.full_like(k, scene.x0), 0 * k)
    y, sy = _bounce(scene.y0, v * dy if dy else 0.0, k, lo, hi) if dy else (np.full_like(k, scene.y0), 0 * k)
    return np.stack([x, y], -1), np.stack([sx, sy], -1)


def render(scene: Scene, frames: int, fps: float, start: int = 0) -> np.ndarray:
    """(frames, SIZE, SIZE, 3) float32 in [0, 1]; edges anti-aliased (coverage of each pixel)."""
    centres, _ = trajectory(scene, frames, fps, start)
    px = np.arange(SIZE, dtype=np.float64) + 0.5  # pixel centres
    dx = px[None, None, :] - centres[:, 0, None, None]
    dy = px[None, :, None] - centres[:, 1, None, None]
    if scene.shape == "circle":
        cover = np.clip(RADIUS + 0.5 - np.sqrt(dx * dx + dy * dy), 0, 1)
    else:
        cover = np.clip(HALF_SIDE + 0.5 - np.abs(dx), 0, 1) * np.clip(HALF_SIDE + 0.5 - np.abs(dy), 0, 1)
    return (cover[..., None] * np.asarray(COLORS[scene.color])).astype(np.float32)


def direction_of(velocity_signs: np.ndarray, scene: Scene) -> str:
    """The direction the object moves in most of the given frames (a bounce can reverse it)."""
    dx, dy = DIRECTIONS[scene.direction]
    s = velocity_signs[:, 0] if dx else velocity_signs[:, 1]
    forward = (s > 0).sum() >= (s < 0).sum()
    axis = ("right", "left") if dx else ("down", "up")
    return axis[0] if forward else axis[1]


def caption(scene: Scene, frames: int, fps: float, start: int = 0) -> str:
    """"a red circle moving right": colour, shape, and the direction of most of these frames."""
    _, signs = trajectory(scene, frames, fps, start)
    return f"a {scene.color} {scene.shape} moving {direction_of(signs, scene)}"


def parse_prompt(prompt: str) -> dict:
    """{"color", "shape", "direction"} named in a prompt (None where absent)."""
    words = prompt.lower().replace(",", " ").replace(".", " ").split()
    pick = lambda options: next((w for w in words if w in options), None)
    return {"color": pick(COLORS), "shape": pick(SHAPES), "direction": pick(DIRECTIONS)}


# ------------------------------------------------------------------------------------- detection

THRESHOLD = 0.35  # a pixel belongs to the object when its brightest channel exceeds this
EDGE = 0.1  # pixels brighter than this weigh in the centroid by their brightness
MIN_PIXELS = 30  # fewer object pixels than this: no object (a circle covers ~150)


@dataclasses.dataclass(frozen=True)
class Detection:
    found: bool
    color: str | None
    centroid: tuple[float, float] | None  # (x, y) pixels
    pixels: int


def detect(frame: np.ndarray) -> Detection:
    """Colour and centroid of the object in one frame (H, W, 3) in [0, 1] (or uint8)."""
    f = np.asarray(frame, np.float32)
    if f.dtype != np.float32 or f.max() > 1.5:
        f = f / 255.0
    bright = f.max(-1)
    mask = bright > THRESHOLD
    n = int(mask.sum())
    if n < MIN_PIXELS:
        return Detection(False, None, None, n)
    mean = f[mask].mean(0)
    mean = mean / max(float(mean.max()), 1e-6)  # compare hues, not brightness
    names = list(COLORS)
    ref = np.asarray([COLORS[c] for c in names])
    ref = ref / ref.max(-1, keepdims=True)
    color = names[int(np.argmin(((ref - mean) ** 2).sum(-1)))]
    w = np.where(bright > EDGE, bright, 0.0)  # anti-aliased edge pixels too: sub-pixel centroids
    ys, xs = np.indices(bright.shape)
    c = (float((w * (xs + 0.5)).sum() / w.sum()), float((w * (ys + 0.5)).sum() / w.sum()))
    return Detection(True, color, c, n)


def detect_video(frames: np.ndarray) -> list[Detection]:
    return [detect(f) for f in frames]


def clip_direction(dets: list[Detection]) -> str | None:
    """Dominant direction of the object's net motion over one clip's detections (None: too few found)."""
    pts = [d.centroid for d in dets if d.found]
    if len(pts) < 2:
        return None
    dx, dy = np.subtract(pts[-1], pts[0])
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def centroid_seams(dets: list[Detection], clip_frames: int) -> dict:
    """Centroid jump at each clip boundary relative to the median centroid step inside clips.

    Only the synthetic world allows this measure (it needs the object's position). Pairs where the
    object is not found in both frames are skipped. Returns {"seams": [...], "within_median",
    "ratio": median seam jump / median within-clip step}.
    """
    pts = [np.asarray(d.centroid) if d.found else None for d in dets]
    steps, seams = [], []
    for k in range(len(pts) - 1):
        if pts[k] is None or pts[k + 1] is None:
            if (k + 1) % clip_frames == 0:
                seams.append(float("nan"))
            continue
        jump = float(np.linalg.norm(pts[k + 1] - pts[k]))
        (seams if (k + 1) % clip_frames == 0 else steps).append(jump)
    within = float(np.median(steps)) if steps else float("nan")
    valid = [s for s in seams if np.isfinite(s)]
    median_seam = float(np.median(valid)) if valid else float("nan")
    return {"seams": seams, "within_median": within, "seam_median": median_seam,
            "ratio": median_seam / within if within > 0 else float("nan")}
