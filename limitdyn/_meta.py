"""Provenance recorded with every result: versions, backend, PRNG, x64, git commit."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from typing import Any

import jax

_PACKAGES = ("limitdyn", "jax", "jaxlib", "numpy", "scipy", "optax", "diffrax", "flax")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(key: jax.Array | None = None) -> dict[str, Any]:
    """Everything needed to say where and how a number was produced."""
    return {
        "versions": versions(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "prng_impl": str(jax.random.key_impl(key)) if key is not None else
        str(jax.config.jax_default_prng_impl),
        "x64": bool(jax.config.jax_enable_x64),
        "git_commit": git_commit(),
    }
