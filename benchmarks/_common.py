"""Shared plumbing of the benchmark scripts: environment record, JSON output, timing."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

import jax

from limitdyn import _meta

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def package_at(rev: str, prefix: str = "limitdyn-rev-") -> str:
    """A temporary directory holding the ``limitdyn`` package as it was at git ``rev``."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, check=True,
                          capture_output=True, text=True).stdout.strip()
    tmp = tempfile.mkdtemp(prefix=prefix)
    archive = subprocess.run(["git", "archive", rev, "limitdyn"], cwd=root, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    return tmp


def environment() -> dict:
    env = _meta.environment(jax.random.key(0))
    env["jax_default_prng_impl"] = str(jax.config.jax_default_prng_impl)
    env["cpu_count"] = os.cpu_count()
    return env


def write(name: str, payload: dict, out: str | None = None) -> str:
    path = out or os.path.join(RESULTS, f"{name}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    payload = dict(payload, environment=environment(), time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=2, default=float)
    print(f"wrote {path}")
    return path


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` (its result blocked on) over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def table(header: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
