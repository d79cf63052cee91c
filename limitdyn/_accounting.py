"""Every simulation inside a scope reports to it (used by experiments: compile and run
time, diverged counts per recorded step), without the experiment passing anything along."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

_SINK: contextvars.ContextVar[Callable[[Any], None] | None] = contextvars.ContextVar(
    "limitdyn_accounting", default=None)


@contextlib.contextmanager
def collect(sink: Callable[[Any], None]) -> Iterator[None]:
    """Inside this scope every finished ``simulate_*`` result is passed to ``sink``."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def report(result: Any) -> None:
    sink = _SINK.get()
    if sink is not None:
        sink(result)
