"""JAX's persistent compilation cache, on by default for the CLI and the pipeline, and its statistics.

A second run of the same config loads its compiled programs from disk instead of compiling again
(tens of seconds for the full UNet). The cache lives in the user's cache directory
(``xla/`` in ``$VINF_CACHE``, default ``~/.cache/vinf_jax/xla``). ``VINF_JAX_CACHE_DIR=PATH``
moves it; ``VINF_JAX_CACHE_DIR=off`` (or ``0``, ``none``, empty) disables it. A cache directory the
user already gave JAX (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is kept as it is.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import jax
import jax.monitoring

from vinf_jax.cache import cache_dir

ENV = "VINF_JAX_CACHE_DIR"
_OFF = ("", "0", "off", "none", "false", "no")
_HIT = "/jax/compilation_cache/cache_hits"
_MISS = "/jax/compilation_cache/cache_misses"
_COMPILE = "/jax/core/compile/backend_compile_duration"


def default_dir() -> Path:
    """``xla/`` in vinf_jax's cache folder (``$VINF_CACHE``, else ``$XDG_CACHE_HOME/vinf_jax``, else
    ``~/.cache/vinf_jax``; the converted tiny-demo checkpoint lives there too)."""
    return cache_dir() / "xla"


def enable() -> str | None:
    """Turn the persistent cache on (unless disabled); returns its directory, or None when off."""
    value = os.environ.get(ENV)
    if value is not None and value.strip().lower() in _OFF:
        return None
    current = jax.config.jax_compilation_cache_dir
    if current and value is None:
        return current  # the user configured JAX's cache directly
    path = Path(value).expanduser() if value else default_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home: run without the cache rather than fail
    jax.config.update("jax_compilation_cache_dir", str(path))
    # cache every program that took noticeable time to compile, whatever its size
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(path)


class CompileStats:
    """Counts persistent-cache hits and misses and the seconds JAX spent getting executables
    (compiling, or reading them from the cache) from its monitoring events, process-wide, from its
    creation on. ``snapshot()`` gives the counts so far."""

    _lock = threading.Lock()
    _counts = {"cache_hits": 0, "cache_misses": 0, "compiles": 0, "compile_s": 0.0}
    _registered = False

    def __init__(self):
        with self._lock:
            if not CompileStats._registered:
                jax.monitoring.register_event_listener(CompileStats._on_event)
                jax.monitoring.register_event_duration_secs_listener(CompileStats._on_duration)
                CompileStats._registered = True
            self._start = dict(self._counts)

    @staticmethod
    def _on_event(event: str, **_):
        if event in (_HIT, _MISS):
            with CompileStats._lock:
                CompileStats._counts["cache_hits" if event == _HIT else "cache_misses"] += 1

    @staticmethod
    def _on_duration(event: str, duration: float, **_):
        if event == _COMPILE:
            with CompileStats._lock:
                CompileStats._counts["compiles"] += 1
                CompileStats._counts["compile_s"] += duration

    def snapshot(self) -> dict:
        with self._lock:
            d = {k: self._counts[k] - self._start[k] for k in self._counts}
        d["compile_s"] = round(d["compile_s"], 3)
        return d
