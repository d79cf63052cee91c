"""Test helpers: a hard deadline per case (no hang goes unnoticed) and stderr checks."""

from __future__ import annotations

import contextlib
import signal


class Hang(BaseException):
    """A case ran past its deadline (a BaseException, so no ``except Exception`` hides it)."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Interrupt the block after ``seconds`` (SIGALRM; a blocking read is interrupted too)."""
    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def one_line(err: str, limit: int = 300) -> bool:
    """Exactly one line on stderr, at most ``limit`` characters, no traceback."""
    return (err.count("\n") == 1 and err.endswith("\n") and len(err) - 1 <= limit
            and "Traceback" not in err)
