"""Memory estimates before large allocations: refuse with the numbers instead of crashing.

:func:`check_allocation` compares the size of an allocation about to be made with a
fraction of the memory available now (``MemAvailable`` of ``/proc/meminfo``, or the
physical memory reported by ``os.sysconf`` where that file does not exist) and raises
:class:`AllocationError` — a ``ValueError`` with a one-line message giving the size, the
limit and what was being allocated — when it does not fit.
"""

from __future__ import annotations

import os

__all__ = ["AllocationError", "available_bytes", "check_allocation", "format_bytes"]


class AllocationError(ValueError):
    """An allocation would exceed the allowed fraction of the available memory."""


def available_bytes() -> int:
    """Memory available for new allocations now, in bytes (without swapping)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        pages = -1
    if pages is None or pages <= 0:
        try:
            pages = os.sysconf("SC_PHYS_PAGES")
        except (OSError, ValueError, AttributeError):
            pages = -1
    try:
        page = os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        page = 4096
    if pages is None or pages <= 0:
        return 1 << 62      # unknown: do not refuse anything on this account
    return int(pages) * int(page)


def format_bytes(n: float) -> str:
    """``n`` bytes with a binary unit: ``58.2 TiB``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB"):
        if abs(n) < 1024 or unit == "ZiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} ZiB"   # pragma: no cover


def check_allocation(nbytes: int, what: str, fraction: float = 0.5) -> None:
    """Raise :class:`AllocationError` when ``nbytes`` exceeds ``fraction`` of the memory
    available now.

    Args:
        nbytes: size of the allocation about to be made, in bytes.
        what: what is being allocated (it names the cause in the message, e.g.
            ``"the data matrix (n × d = 10^12 × 16 float32)"``).
        fraction: the largest share of the available memory one allocation may take.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    available = available_bytes()
    limit = int(fraction * available)
    if nbytes > limit:
        raise AllocationError(
            f"{what} would need {format_bytes(nbytes)}, more than {fraction:.0%} of the "
            f"{format_bytes(available)} of memory available ({format_bytes(limit)}); "
            "reduce the sizes")
