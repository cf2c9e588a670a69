"""The one JSON writer: 2-space indented text, written under a temporary name and renamed, so a
half-written file never replaces a whole one. (Generation outputs, which must never replace an
existing file, go through ``video_io``'s publishing with the same text.)"""

from __future__ import annotations

import json
import os
from pathlib import Path


def dumps(data, *, sort_keys: bool = False) -> str:
    return json.dumps(data, indent=2, sort_keys=sort_keys, default=str) + "\n"


def write_json(path: str | os.PathLike, data, *, sort_keys: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (replacing what is there), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(dumps(data, sort_keys=sort_keys))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
