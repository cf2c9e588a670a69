"""A small PNG overview of a generated video: evenly spaced frames, clip boundaries marked.

Each thumbnail carries a label ``c<clip> f<frame>``; where the clip changes between two neighbouring
thumbnails the gap before the second is a red bar (at the start of a row: the left margin). Written with Pillow, atomically (``video_io``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GAP = 4  # pixels between thumbnails
LABEL = 12  # label strip above each thumbnail
BOUNDARY = (220, 30, 30)


def sheet_indices(frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices from 0 to frames-1 (all of them when frames <= count)."""
    if frames <= count:
        return list(range(frames))
    return sorted({int(round(x)) for x in np.linspace(0, frames - 1, count)})


def contact_sheet(frames: np.ndarray, clip_frames: int, count: int = 16, per_row: int = 8, height: int = 96,
                  indices: list[int] | None = None):
    """frames (T, H, W, 3) in [0, 1] -> PIL image; thumbnails ``height`` pixels high (never upscaled
    by more than 2x), ``per_row`` to a row. With ``indices``, ``frames`` are already the chosen
    frames and ``indices`` their frame numbers in the video."""
    from PIL import Image, ImageDraw

    t, h, w, _ = frames.shape
    if indices is None:
        idx = sheet_indices(t, count)
    else:
        idx, frames = list(indices), {k: f for k, f in zip(indices, frames)}
    th = min(height, 2 * h)
    tw = max(1, round(w * th / h))
    cols = min(per_row, len(idx))
    rows = -(-len(idx) // cols)
    sheet = Image.new("RGB", (cols * tw + (cols + 1) * GAP, rows * (th + LABEL) + (rows + 1) * GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for n, k in enumerate(idx):
        r, c = divmod(n, cols)
        x, y = GAP + c * (tw + GAP), GAP + r * (th + LABEL + GAP)
        img = Image.fromarray((np.clip(frames[k], 0, 1) * 255 + 0.5).astype(np.uint8))
        sheet.paste(img.resize((tw, th), Image.NEAREST if th >= h else Image.BILINEAR), (x, y + LABEL))
        draw.text((x + 1, y), f"c{k // clip_frames} f{k}", fill="black")
        if n > 0 and idx[n - 1] // clip_frames != k // clip_frames:  # a clip boundary lies before this one
            draw.rectangle([x - GAP, y, x - 1, y + LABEL + th], fill=BOUNDARY)
    return sheet


def write_contact_sheet(path: Path, frames: np.ndarray, clip_frames: int, **kw) -> None:
    from vinf_jax.output.video_io import atomic_write

    image = contact_sheet(np.asarray(frames, np.float32), clip_frames, **kw)
    with atomic_write(Path(path)) as tmp:
        image.save(tmp, format="PNG")
