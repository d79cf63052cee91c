"""Self-describing run directories, written atomically.

An experiment writes into a fresh temporary directory next to the target; only when
everything — ``data.npz``, the figures, ``report.md`` and, last, ``summary.json`` — is
written is it renamed to the target. A run killed midway leaves at most a
``.<name>.tmp-<pid>`` directory, never a half-written run; a directory with a
``summary.json`` is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import numpy as np

from .result import _json_default


class OutputError(ValueError):
    """The output directory cannot be used."""


def check_target(path: str, overwrite: bool) -> None:
    """Refuse a non-empty target unless ``overwrite`` (before any work is done)."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise OutputError(f"--out {path} exists and is not a directory")
        if os.listdir(path) and not overwrite:
            raise OutputError(f"--out {path} is not empty; pass --overwrite to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create {parent}: {err.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write to {parent}")


class RunDirectory:
    """Collects a run's outputs in a temporary directory; :meth:`commit` publishes them."""

    def __init__(self, target: str):
        self.target = os.path.abspath(target)
        parent, name = os.path.split(self.target)
        self.tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}")
        if os.path.exists(self.tmp):
            shutil.rmtree(self.tmp)
        os.makedirs(self.tmp)
        self.arrays: dict[str, np.ndarray] = {}
        self.figures: list[str] = []

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)

    def add_arrays(self, prefix: str, **arrays: Any) -> None:
        for key, value in arrays.items():
            self.arrays[f"{prefix}/{key}" if prefix else key] = np.asarray(value)

    def save_figure(self, fig, name: str) -> str:
        fig.savefig(self.path(name), dpi=110, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
        self.figures.append(name)
        return name

    def write_text(self, name: str, text: str) -> None:
        with open(self.path(name), "w") as fh:
            fh.write(text)

    def commit(self, summary: dict[str, Any]) -> str:
        """Write data.npz and, last, summary.json; then rename into place."""
        np.savez_compressed(self.path("data.npz"), **self.arrays)
        summary = dict(summary, files=[*sorted(os.listdir(self.tmp)), "summary.json"],
                       completed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        with open(self.path("summary.json"), "w") as fh:
            json.dump(summary, fh, indent=2, default=_json_default)
        if os.path.exists(self.target):
            old = f"{self.tmp}.old"
            os.replace(self.target, old)
            os.replace(self.tmp, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.target)
        return self.target

    def abandon(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def read_summary(path: str) -> dict[str, Any]:
    """The summary of a finished run directory (OutputError when incomplete or not a run)."""
    if not os.path.isdir(path):
        raise OutputError(f"{path} is not a directory")
    summary = os.path.join(path, "summary.json")
    if not os.path.exists(summary):
        raise OutputError(f"{path} holds no summary.json: not a finished limitdyn run")
    try:
        with open(summary) as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise OutputError(f"{summary} is corrupt: {err}") from None


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
