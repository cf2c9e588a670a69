"""The synthetic world of the demo: one shape of one colour moving at constant speed on black,
with a faint trail behind it (``TRAIL``).

A scene is a shape (circle, square), a colour, a direction (right, left, down, up) and a start
position (anywhere in the frame; with ``LANE_WIDTH`` set, in the direction's lane: a diagnostic of
issue 23 that the shipped model was not trained with). The object moves ``SPEED`` pixels per *second*
along that axis, so its step per frame is ``SPEED / fps``: the fps conditioning of the UNet has a
meaning. The frame is a torus: what leaves one border comes back in at the opposite one (drawn on both sides while it crosses). The object thus
never turns, and a caption ("a red circle moving right") is true of every frame of every window of
the video -- with bouncing walls a per-clip direction word was false for part of many clips, and even
a perfect model could not agree with it. Everything is a function of the scene (or of a seed), so
any frame range of any length can be rendered, and the same seed always gives the same video.

:func:`detect` is the other direction: colour, shape and centroid of the object in a frame. Positions
live on the torus, so centroids are circular means and steps between them are wrap-aware
(:func:`wrapped_step`). Tests and benchmarks use it to check generated videos against their prompts.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SIZE = 64  # frames are SIZE x SIZE, and positions wrap around modulo SIZE
RADIUS = 7.0  # circle radius (area 177 px)
HALF_SIDE = 7.0  # the square holds the circle (area 225 px): its corners and larger area tell them apart
SPEED = 32.0  # pixels per second: 2 px per frame at the demo's 16 fps, a quarter of a latent pixel
COLORS = {"red": (0.95, 0.1, 0.1), "green": (0.1, 0.85, 0.15), "blue": (0.15, 0.3, 1.0),
          "yellow": (0.95, 0.85, 0.1)}
SHAPES = ("circle", "square")
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}  # (dx, dy), y grows downwards
FPS_CHOICES = (8, 12, 16, 24)
# A motion trail: faint copies of the object (distance behind it in pixels, brightness), so that one frame
# shows which way the object goes. Without it a clip moving right is a clip moving left played backwards,
# and the UNet's temporal attention (no frame positions in diffusers' UNet3D) cannot tell them apart;
# the trail makes the direction word a property of every frame, as the colour and shape words are.
# It stays darker than the detector's THRESHOLD, so colour, shape and size are the object's alone.
TRAIL = ((5.0, 0.25), (10.0, 0.12))
WORDS = ("a", "moving") + tuple(COLORS) + SHAPES + tuple(DIRECTIONS)
# Lanes: objects keep to the right of their way, as traffic does. The centre's coordinate across the motion
# is drawn from a band this wide (pixels) in the middle of the half of the frame on the right-hand side of
# the direction of travel (y grows downwards), so a clip moving right has another mean than one moving left
# (BENCHMARKS.md, issue 23: it did not teach the direction word). None: anywhere, the shipped world.
LANE_WIDTH = None


@dataclasses.dataclass(frozen=True)
class Scene:
    shape: str
    color: str
    direction: str
    x0: float  # centre at frame 0, pixels in [0, SIZE)
    y0: float


def lane(direction: str) -> tuple[int, float, float] | None:
    """(axis across the motion (0: x, 1: y), low, high) of the band its centre keeps to; None: anywhere."""
    if LANE_WIDTH is None:
        return None
    dx, dy = DIRECTIONS[direction]
    axis, right_hand = (1, dx) if dx else (0, -dy)  # facing +x the right hand points to +y, facing +y to -x
    mid = SIZE * (0.75 if right_hand > 0 else 0.25)
    return axis, mid - LANE_WIDTH / 2, mid + LANE_WIDTH / 2


def place(direction: str, start) -> tuple[float, float]:
    """A start (x, y) uniform over the frame, moved into ``direction``'s lane (the coordinate across the
    motion scaled into the band): a uniform start in the lane, from the same draws in any world."""
    start = np.array(start, np.float64)
    band = lane(direction)
    if band is not None:
        axis, lo, hi = band
        start[axis] = lo + (hi - lo) * start[axis] / SIZE
    return float(start[0]), float(start[1])


def random_scene(rng: np.random.Generator) -> Scene:
    shape = SHAPES[rng.integers(len(SHAPES))]
    start = rng.uniform(0, SIZE, size=2)
    color, direction = list(COLORS)[rng.integers(len(COLORS))], list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
    return Scene(shape, color, direction, *place(direction, start))


TURNS = ("right", "down", "left", "up")  # each a quarter turn clockwise from the one before (y grows downwards)


def heading(scene: Scene, direction: str, frame: int, fps: float) -> Scene:
    """The same object on the same spot at ``frame`` (of a video at ``fps``), moving ``direction`` instead."""
    v = SPEED / fps
    (ox, oy), (nx, ny) = DIRECTIONS[scene.direction], DIRECTIONS[direction]
    return dataclasses.replace(scene, direction=direction, x0=float(np.mod(scene.x0 + (ox - nx) * v * frame, SIZE)),
                               y0=float(np.mod(scene.y0 + (oy - ny) * v * frame, SIZE)))


def scene_from_seed(seed: int) -> Scene:
    return random_scene(np.random.default_rng(seed))


def all_prompts() -> list[str]:
    """Every caption of the world (32), sorted."""
    return sorted(caption(Scene(s, c, d, 0.0, 0.0)) for c in COLORS for s in SHAPES for d in DIRECTIONS)


def wrapped_step(a, b) -> np.ndarray:
    """The shortest displacement from ``a`` to ``b`` on the torus, per axis, in [-SIZE/2, SIZE/2)."""
    return np.mod(np.subtract(b, a) + SIZE / 2, SIZE) - SIZE / 2


def trajectory(scene: Scene, frames: int, fps: float, start: int = 0) -> np.ndarray:
    """Centres (frames, 2) as (x, y) in [0, SIZE) for frames start..start+frames-1."""
    k = np.arange(start, start + frames, dtype=np.float64)
    dx, dy = DIRECTIONS[scene.direction]
    v = SPEED / fps
    return np.stack([np.mod(scene.x0 + dx * v * k, SIZE), np.mod(scene.y0 + dy * v * k, SIZE)], -1)


def coverage(shape: str, centres: np.ndarray) -> np.ndarray:
    """(len(centres), SIZE, SIZE) share of each pixel covered by ``shape`` centred at each (x, y), wrapping."""
    px = np.arange(SIZE, dtype=np.float64) + 0.5  # pixel centres
    dx = wrapped_step(centres[:, 0, None, None], px[None, None, :])
    dy = wrapped_step(centres[:, 1, None, None], px[None, :, None])
    if shape == "circle":
        return np.clip(RADIUS + 0.5 - np.sqrt(dx * dx + dy * dy), 0, 1)
    return np.clip(HALF_SIDE + 0.5 - np.abs(dx), 0, 1) * np.clip(HALF_SIDE + 0.5 - np.abs(dy), 0, 1)


def render(scene: Scene, frames: int, fps: float, start: int = 0) -> np.ndarray:
    """(frames, SIZE, SIZE, 3) float32 in [0, 1]; edges anti-aliased (coverage of each pixel), with the
    faint ``TRAIL`` copies behind the object (the brighter of object and trail wins)."""
    centres = trajectory(scene, frames, fps, start)
    cover = coverage(scene.shape, centres)
    back = -np.asarray(DIRECTIONS[scene.direction], np.float64)
    for distance, level in TRAIL:
        cover = np.maximum(cover, level * coverage(scene.shape, centres + distance * back))
    return (cover[..., None] * np.asarray(COLORS[scene.color])).astype(np.float32)


def caption(scene: Scene) -> str:
    """"a red circle moving right": true of every frame, since the object never turns."""
    return f"a {scene.color} {scene.shape} moving {scene.direction}"


def parse_prompt(prompt: str) -> dict:
    """{"color", "shape", "direction"} named in a prompt (None where absent)."""
    words = prompt.lower().replace(",", " ").replace(".", " ").split()
    pick = lambda options: next((w for w in words if w in options), None)
    return {"color": pick(COLORS), "shape": pick(SHAPES), "direction": pick(DIRECTIONS)}


# ------------------------------------------------------------------------------------- detection

THRESHOLD = 0.35  # a pixel belongs to the object when its brightest channel exceeds this
# pixels brighter than this weigh in the centroid by their brightness (anti-aliased edges: sub-pixel
# centroids); above the trail's brightness, so that the trail does not pull the centroid backwards
EDGE = max([0.1] + [level * 1.2 for _, level in TRAIL])
MIN_PIXELS = 30  # fewer object pixels than this: no object (a circle covers ~150)


@dataclasses.dataclass(frozen=True)
class Detection:
    found: bool
    color: str | None
    centroid: tuple[float, float] | None  # (x, y) pixels in [0, SIZE)
    pixels: int
    shape: str | None = None


def _circular_mean(weights: np.ndarray, axis: int) -> float:
    """Weighted mean position along ``axis`` (0: y, 1: x) on the torus: exact for shapes symmetric about
    their centre, wherever they are cut by the border."""
    theta = 2 * np.pi * (np.arange(SIZE) + 0.5) / SIZE
    w = weights.sum(1 - axis)
    angle = np.arctan2((w * np.sin(theta)).sum(), (w * np.cos(theta)).sum())
    return float(np.mod(angle * SIZE / (2 * np.pi), SIZE))  # pixel i covers [i, i + 1): its centre is i + 0.5


def _shape_of(mask: np.ndarray, centroid: tuple[float, float]) -> str:
    """The shape whose rendering at ``centroid`` overlaps the object mask best (intersection over union)."""
    c = np.asarray([centroid], np.float64)
    iou = []
    for shape in SHAPES:
        m = coverage(shape, c)[0] > THRESHOLD
        iou.append((m & mask).sum() / max((m | mask).sum(), 1))
    return SHAPES[int(np.argmax(iou))]


def detect(frame: np.ndarray) -> Detection:
    """Colour, shape and centroid of the object in one frame (H, W, 3) in [0, 1] (or uint8)."""
    f = np.asarray(frame, np.float32)
    if np.asarray(frame).dtype == np.uint8 or f.max() > 1.5:
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
    c = (_circular_mean(w, 1), _circular_mean(w, 0))
    return Detection(True, color, c, n, _shape_of(mask, c))


def detect_video(frames: np.ndarray) -> list[Detection]:
    return [detect(f) for f in frames]


def clip_direction(dets: list[Detection]) -> str | None:
    """Dominant direction of the object's net motion over one clip (None: found in fewer than 2 frames).

    The net motion is the sum of wrap-aware steps between consecutive detections, so crossing a border
    counts as the small step it is."""
    pts = [d.centroid for d in dets if d.found]
    if len(pts) < 2:
        return None
    dx, dy = wrapped_step(pts[:-1], pts[1:]).sum(0)
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def centroid_seams(dets: list[Detection], clip_frames: int) -> dict:
    """Centroid jump at each clip boundary relative to the median centroid step inside clips.

    Only the synthetic world allows this measure (it needs the object's position); jumps are
    wrap-aware distances. Pairs where the object is not found in both frames are skipped. Returns
    {"seams": [...], "within_median", "ratio": median seam jump / median within-clip step}.
    """
    pts = [d.centroid if d.found else None for d in dets]
    steps, seams = [], []
    for k in range(len(pts) - 1):
        if pts[k] is None or pts[k + 1] is None:
            if (k + 1) % clip_frames == 0:
                seams.append(float("nan"))
            continue
        jump = float(np.linalg.norm(wrapped_step(pts[k], pts[k + 1])))
        (seams if (k + 1) % clip_frames == 0 else steps).append(jump)
    within = float(np.median(steps)) if steps else float("nan")
    valid = [s for s in seams if np.isfinite(s)]
    median_seam = float(np.median(valid)) if valid else float("nan")
    return {"seams": seams, "within_median": within, "seam_median": median_seam,
            "ratio": median_seam / within if within > 0 else float("nan")}
