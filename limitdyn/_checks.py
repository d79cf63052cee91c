"""Input validation shared by the public API.

Every check runs on host values before anything is traced or compiled, and raises
``ValueError`` (or ``TypeError`` for a wrong kind of object) with a one-line message
that names the parameter, what was given and what is allowed.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def finite_float(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a float after checking it is a finite real in the given range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if (isinstance(value, np.ndarray | np.generic) and np.ndim(value) == 0
                and np.isrealobj(value)):
            value = value.item()
        else:
            try:  # jax scalars and 0-d arrays
                arr = np.asarray(value)
            except Exception:
                arr = None
            if arr is None or arr.ndim != 0 or arr.dtype.kind not in "fiu":
                raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
            value = arr.item()
    value = float(value)
    interval = _interval_text(low, high, low_open, high_open)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number {interval}, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {interval}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {interval}, got {value}")
    return value


def _interval_text(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def integer(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int after checking it is an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | np.integer):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value}")
    return value


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """Check ``value`` is one of the ``allowed`` names."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def real_array(name: str, value: Any, *, ndim: int | tuple[int, ...] | None = None,
               shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Convert to a float64 numpy array, checking kind, rank, shape and finiteness."""
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists and other non-arrays
        raise TypeError(f"{name} must be a numeric array ({err.__class__.__name__})") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must be a real numeric array, got booleans")
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if ndims is not None and arr.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions, "
                         f"got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape,
                                                                                     strict=True)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} must be finite; it has {bad} NaN or infinite entries")
    return arr
