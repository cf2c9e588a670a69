"""Counting what JAX does, from its public monitoring events (no hooks in the library)."""

from __future__ import annotations

import contextlib

import jax.monitoring

TRACE = "/jax/core/compile/jaxpr_trace_duration"


@contextlib.contextmanager
def count_traces(fun_name: str):
    """Yields a dict whose "n" counts the jit traces of functions named ``fun_name`` inside the block."""
    counts = {"n": 0}

    def listener(event, duration, **kw):
        if event == TRACE and kw.get("fun_name") == fun_name:
            counts["n"] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
