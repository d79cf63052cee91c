"""Self-describing run directories: every file written atomically, a completion marker last.

A run directory is written in place, in this order::

    run.json        what was asked for (experiment, seed, configuration): written first
    checkpoints/    the state of every simulation, saved after each chunk (while running)
    data.npz, *.png, report.md
    summary.json    results, verdicts, timings, environment
    COMPLETE        the completion marker: SHA-256 of every file above; written last

Each file goes to ``NAME.tmp-PID`` and is renamed into place, so no file is ever seen
half-written. A run killed at any moment leaves a directory that :func:`inspect` calls
*partial* (``run.json`` without ``COMPLETE``; ``limitdyn run --resume DIR`` continues it
from its checkpoints) and a finished one *complete*; a marker whose hashes no longer
match, or unreadable metadata, makes it *corrupt*.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .result import _json_default

FORMAT = 1
MANIFEST, SUMMARY, MARKER, CHECKPOINTS = "run.json", "summary.json", "COMPLETE", "checkpoints"


class OutputError(ValueError):
    """The output directory cannot be used."""


def _atomic(path: str, write: Callable[[Any], None], mode: str = "w") -> None:
    """Write ``path`` through a temporary file renamed into place after fsync."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):   # a kill leaves it; resume removes it then
            os.remove(tmp)
        raise


def _write_json(path: str, obj: Any) -> None:
    _atomic(path, lambda fh: json.dump(obj, fh, indent=2, default=_json_default))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_run_directory(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, f)) for f in (MANIFEST, SUMMARY, MARKER))


def check_target(path: str, overwrite: bool) -> None:
    """Refuse a non-empty target unless ``overwrite`` (before any work is done).

    ``overwrite`` replaces only limitdyn run directories, never an arbitrary folder.
    """
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise OutputError(f"--out {path} exists and is not a directory")
        if os.listdir(path):
            if not overwrite:
                raise OutputError(f"--out {path} is not empty; pass --overwrite to replace it "
                                  "(or --resume to continue a partial run)")
            if not _is_run_directory(path):
                raise OutputError(f"--out {path} is not a limitdyn run directory; --overwrite "
                                  "only replaces those")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create {parent}: {err.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write to {parent}")


class RunDirectory:
    """A run's output directory (see the module docstring for its life cycle).

    Args:
        target: the directory.
        manifest: what the run was asked to do; written as ``run.json`` unless resuming.
        resume: continue a partial run in ``target`` (keeps its checkpoints).
    """

    def __init__(self, target: str, manifest: dict[str, Any] | None = None, *,
                 resume: bool = False):
        self.target = os.path.abspath(target)
        self.arrays: dict[str, np.ndarray] = {}
        self.figures: list[str] = []
        if resume:
            for stale in glob.glob(os.path.join(self.target, "*.tmp-*")):
                os.remove(stale)
            return
        if os.path.isdir(self.target):      # check_target allowed it: empty or --overwrite
            shutil.rmtree(self.target)
        os.makedirs(self.checkpoints)
        _write_json(self.path(MANIFEST), dict(manifest or {}, format=FORMAT,
                                              started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z")))

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.target, CHECKPOINTS)

    def path(self, name: str) -> str:
        return os.path.join(self.target, name)

    def add_arrays(self, prefix: str, **arrays: Any) -> None:
        for key, value in arrays.items():
            self.arrays[f"{prefix}/{key}" if prefix else key] = np.asarray(value)

    def save_figure(self, fig, name: str) -> str:
        fmt = os.path.splitext(name)[1].lstrip(".") or "png"
        _atomic(self.path(name), lambda fh: fig.savefig(fh, format=fmt, dpi=110,
                                                        bbox_inches="tight"), "wb")
        import matplotlib.pyplot as plt

        plt.close(fig)
        self.figures.append(name)
        return name

    def write_text(self, name: str, text: str) -> None:
        _atomic(self.path(name), lambda fh: fh.write(text))

    def commit(self, summary: dict[str, Any]) -> str:
        """Write data.npz, then summary.json, drop the checkpoints, then the marker."""
        _atomic(self.path("data.npz"), lambda fh: np.savez_compressed(fh, **self.arrays), "wb")
        outputs = sorted(f for f in os.listdir(self.target)
                         if f not in (CHECKPOINTS, MARKER, SUMMARY) and ".tmp-" not in f)
        summary = dict(summary, files=[*outputs, SUMMARY],
                       completed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        _write_json(self.path(SUMMARY), summary)
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        hashes = {f: _sha256(self.path(f)) for f in [*outputs, SUMMARY]}
        _write_json(self.path(MARKER), {"format": FORMAT, "sha256": hashes})
        return self.target


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """What :func:`inspect` found: ``state`` is complete, partial or corrupt."""

    state: str
    detail: str
    manifest: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    checkpoints: tuple[dict[str, Any], ...] = ()


def _read_object(path: str) -> dict[str, Any]:
    """A JSON object from ``path``; ValueError (one line) when unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, ValueError) as err:    # ValueError: bad JSON, bad UTF-8
        raise ValueError(f"{os.path.basename(path)} is unreadable: "
                         f"{str(err).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{os.path.basename(path)} does not hold a JSON object")
    return obj


def _verify(path: str, marker: dict[str, Any]) -> str | None:
    """Why the files listed in the completion marker do not check out (None when they do)."""
    hashes = marker.get("sha256")
    if not isinstance(hashes, dict) or not hashes or SUMMARY not in hashes:
        return f"{MARKER} does not list the run's files"
    for name, digest in hashes.items():
        file = os.path.join(path, str(name))
        if os.path.basename(str(name)) != name or not os.path.isfile(file):
            return f"{name} is missing"
        if _sha256(file) != digest:
            return f"{name} has changed since the run completed"
    return None


def inspect(path: str) -> RunStatus:
    """Classify a run directory as complete, partial (resumable) or corrupt.

    Raises:
        OutputError: ``path`` is not a directory or not a limitdyn run directory.
    """
    from . import checkpoint as ckpt

    if not os.path.isdir(path):
        raise OutputError(f"{path} is not a directory")
    if not _is_run_directory(path):
        raise OutputError(f"{path} is not a limitdyn run directory (no {MANIFEST}, {SUMMARY} "
                          f"or {MARKER})")
    manifest = None
    try:
        if os.path.exists(os.path.join(path, MANIFEST)):
            manifest = _read_object(os.path.join(path, MANIFEST))
            kinds = {"experiment": str, "seed": int, "quick": bool, "config": dict}
            wrong = [k for k, t in kinds.items() if not isinstance(manifest.get(k), t)]
            if wrong:
                raise ValueError(f"{MANIFEST} lacks a valid {', '.join(wrong)}")
        if os.path.exists(os.path.join(path, MARKER)):
            problem = _verify(path, _read_object(os.path.join(path, MARKER)))
            if problem:
                return RunStatus("corrupt", problem, manifest)
            summary = _read_object(os.path.join(path, SUMMARY))
            return RunStatus("complete", "complete (files verified against the completion "
                             "marker)", manifest, summary)
    except ValueError as err:
        return RunStatus("corrupt", str(err), manifest)
    if manifest is None:
        return RunStatus("corrupt", f"no {MANIFEST} and no {MARKER}: cannot be resumed")
    progress = tuple(ckpt.progress_of(os.path.join(path, CHECKPOINTS)))
    bad = [p for p in progress if "error" in p]
    if bad:
        return RunStatus("corrupt", bad[0]["error"], manifest, checkpoints=progress)
    done = sum(p["next_event"] == p["n_events"] for p in progress)
    detail = (f"partial (resumable): {done} simulation(s) finished"
              + (f", simulation {len(progress) - 1} at step {progress[-1]['step']}"
                 if progress and done < len(progress) else "")
              + f"; continue with `limitdyn run --resume {path}`")
    return RunStatus("partial", detail, manifest, checkpoints=progress)


def read_summary(path: str) -> dict[str, Any]:
    """The summary of a complete run directory (OutputError otherwise)."""
    status = inspect(path)
    if status.state != "complete":
        raise OutputError(f"{path}: {status.detail}")
    return status.summary


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
