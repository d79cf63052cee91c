"""Checkpoints of an ensemble run: the complete state between two chunks, written atomically.

A checkpoint holds the runner's whole carry — phase-space state, sampler state, the
alive mask, the step index (the position in the random stream: step k of trajectory i
uses ``fold_in(fold_in(key, i), k)``, so the step index *is* the stream position) and
the accumulated statistics — plus the index of the next event and a fingerprint of
everything that determines the run (kernel, problem data, hyperparameters, key, start
points, schedule, PRNG settings). A run resumed from a checkpoint replays the same
compiled chunks from the same carry, so its statistics are those of the uninterrupted
run (bit for bit on the same machine and JAX version).

Writes go to ``PATH.tmp-PID`` and are renamed over ``PATH`` after ``fsync``: a kill at
any moment leaves either the previous checkpoint or the new one, never a torn file.

Python use::

    res = ld.simulate_sgd(prob, hp, key, 4096, 10**6, checkpoint="run.ckpt.npz")
    # killed? the same call again continues from the last chunk.

Experiments run by the CLI checkpoint every simulation automatically (see
:func:`auto_checkpoints`); ``limitdyn run --resume DIR`` continues them.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import hashlib
import os
import re
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, or written by a different run."""


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _host(x: Any) -> np.ndarray:
    return np.asarray(jax.random.key_data(x) if _is_key(x) else x)


def _describe(obj: Any) -> str:
    """A process-independent description of a static object (no memory addresses)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def fingerprint(static: Any, *trees: Any) -> str:
    """SHA-256 of a static description and of every array leaf (shape, dtype and bytes)."""
    h = hashlib.sha256(f"limitdyn-checkpoint-{FORMAT}|{_describe(static)}".encode())
    for tree in trees:
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        h.update(str(treedef).encode())
        for leaf in leaves:
            a = np.ascontiguousarray(_host(leaf))
            h.update(f"{a.shape}{a.dtype}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def save(path: str, carry: Any, next_event: int, n_events: int, step: int, run_id: str) -> None:
    """Write the carry after ``next_event`` of ``n_events`` events, atomically."""
    leaves = jax.tree_util.tree_leaves(carry)
    arrays = {f"leaf_{i}": _host(x) for i, x in enumerate(leaves)}
    meta = np.array([FORMAT, next_event, n_events, step], dtype=np.int64)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        np.savez(fh, meta=meta, fingerprint=np.array(run_id), **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def peek(path: str) -> dict[str, int]:
    """Progress stored in a checkpoint: next_event, n_events, step (CheckpointError if bad)."""
    try:
        with np.load(path) as data:
            fmt, next_event, n_events, step = (int(v) for v in data["meta"])
    except Exception as err:   # zip/npz/format errors of every kind mean "corrupt"
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(err).__name__}: "
                              f"{err})") from None
    if fmt != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {fmt}, this limitdyn reads {FORMAT}")
    return {"next_event": next_event, "n_events": n_events, "step": step}


def load(path: str, template: Any, run_id: str) -> tuple[Any, int] | None:
    """The carry and next event stored at ``path``; None when there is no checkpoint.

    Raises:
        CheckpointError: the file is unreadable or belongs to a different run.
    """
    for stale in glob.glob(f"{glob.escape(path)}.tmp-*"):   # a write killed midway
        with contextlib.suppress(OSError):
            os.remove(stale)
    if not os.path.exists(path):
        return None
    progress = peek(path)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    try:
        with np.load(path) as data:
            stored_id = str(data["fingerprint"])
            arrays = [data[f"leaf_{i}"] for i in range(len(leaves))]
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(err).__name__}: "
                              f"{err})") from None
    if stored_id != run_id:
        raise CheckpointError(f"checkpoint {path} was written by a different run (other "
                              "problem, hyperparameters, seed, sizes or schedule); delete it "
                              "or choose another checkpoint path")
    restored = []
    for array, like in zip(arrays, leaves, strict=True):
        if array.shape != _host(like).shape or array.dtype != _host(like).dtype:
            raise CheckpointError(f"checkpoint {path} does not match this run's state layout")
        value = (jax.random.wrap_key_data(array, impl=jax.random.key_impl(like))
                 if _is_key(like) else array)
        restored.append(jax.device_put(value, like.sharding))   # same placement as a fresh run
    return jax.tree_util.tree_unflatten(treedef, restored), progress["next_event"]


# --- automatic checkpoints for every simulation inside a scope (used by the CLI) ---------

class _Scope:
    def __init__(self, directory: str):
        self.directory = directory
        self.count = 0

    def next_path(self) -> str:
        path = os.path.join(self.directory, f"run-{self.count:03d}.npz")
        self.count += 1
        return path


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("checkpoints",
                                                                       default=None)


@contextlib.contextmanager
def auto_checkpoints(directory: str) -> Iterator[None]:
    """Inside this scope every ensemble run without its own ``checkpoint=`` is checkpointed
    to ``directory/run-NNN.npz``, numbered in call order.

    An experiment calls its simulations in a fixed order, so on resume call *n* finds its
    own checkpoint again (the fingerprint refuses any other).
    """
    os.makedirs(directory, exist_ok=True)
    token = _SCOPE.set(_Scope(directory))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def resolve(checkpoint: str | os.PathLike | None) -> str | None:
    """The path a run checkpoints to: the given one, the scope's next one, or None."""
    if checkpoint is not None or _SCOPE.get() is not None:
        if jax.process_count() > 1:
            raise ValueError("checkpoint: not supported in a multi-process (jax.distributed) "
                             "run; each process would need the whole state")
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a file path or None, got "
                            f"{type(checkpoint).__name__}")
        path = os.fspath(checkpoint)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ValueError(f"checkpoint {path}: directory {parent} does not exist")
        if os.path.isdir(path):
            raise ValueError(f"checkpoint {path} is a directory; give a file path")
        return path
    scope = _SCOPE.get()
    return None if scope is None else scope.next_path()


def progress_of(directory: str) -> list[dict[str, Any]]:
    """Progress of every checkpoint in a directory (for ``limitdyn show``)."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "run-*.npz"))):
        try:
            out.append({"file": os.path.basename(path)} | peek(path))
        except CheckpointError as err:
            out.append({"file": os.path.basename(path), "error": str(err)})
    return out
