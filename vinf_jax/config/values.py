"""Value checks of the config layer: every failure is a ConfigError naming the key path, the bad value
and what is allowed. No jax or numpy here: the CLI validates before any device work."""

from __future__ import annotations

import json
import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from vinf_jax.errors import ConfigError, VinfWarning


class ConfigWarning(VinfWarning):
    """A config key is accepted for compatibility with the original code but has no effect."""


WARNED: set[str] = set()


def warn_once(key: str, message: str) -> None:
    if key not in WARNED:
        WARNED.add(key)
        warnings.warn(message, ConfigWarning, stacklevel=3)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, numbers.Integral):
        return "integer"
    if isinstance(value, numbers.Real):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type_name(value)})"


def fail(path: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{path}: expected {expected}, got {show(value)}")


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def as_int(value: Any, path: str, lo: int | None = None, hi: int | None = None, what: str = "") -> int:
    if lo is not None and hi is not None:
        expected = f"an integer in {lo}..{hi}{what}"
    elif lo is not None:
        expected = f"an integer >= {lo}{what}"
    else:
        expected = f"an integer{what}"
    if not is_int(value):
        raise fail(path, expected, value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise fail(path, expected, value)
    return int(value)


def as_number(value: Any, path: str, positive: bool = False) -> float:
    expected = "a finite number > 0" if positive else "a finite number"
    if not is_number(value) or not math.isfinite(value) or (positive and value <= 0):
        raise fail(path, expected, value)
    return value if is_int(value) and positive else float(value)


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise fail(path, "true or false", value)
    return value


def choice(value: Any, path: str, choices: Sequence[Any]) -> Any:
    if value not in choices or isinstance(value, bool) or not isinstance(value, (str, type(None))):
        allowed = ", ".join(json.dumps(c) for c in choices)
        raise fail(path, f"one of {allowed}", value)
    return value


def as_string(value: Any, path: str, allow_empty: bool = False, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or (not allow_empty and not value):
        expected = "a string" if allow_empty else "a non-empty string"
        raise fail(path, expected + (" or null" if allow_none else ""), value)
    return value


def set_field(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalise a field of a frozen dataclass in __post_init__

