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
any moment leaves either the previous checkpoint or the new one, never a torn file. Each
checkpoint ends with the SHA-256 of the archive before it (progress, fingerprint, every
array), checked on every read: a flipped byte anywhere in the file is found, not trusted.

Records that only grow — kept trajectories ``(K, n_record, 2d)``, traces ``(K, n_steps)``,
the per-recorded-step statistics ``(n_record, 2d, 2d)``: arrays an observer fills one slot
at a time and never touches again (:class:`Growing`) — are not rewritten at every save.
They live in one side file ``PATH.kept`` to which a save *appends* one block with, for
each such leaf, the slots filled since the previous save (in the leaf's own layout),
truncating first to what the current ``PATH`` vouches for, so bytes a killed save appended
are dropped; ``PATH`` lists each block with its slot ranges and SHA-256, and a read
checks them. A save then costs the new slots, not the whole record; a kill between the
append and the rename leaves the previous checkpoint valid (it reads only its own prefix
of the side file).

A checkpoint is a cache of deterministic work. Inside :func:`auto_checkpoints` (every
simulation of ``limitdyn run``) a checkpoint that fails its check — unreadable, its hash
wrong, written by another run or with another layout — is *set aside* (renamed
``run-NNN.npz.bad-K``, a :class:`CheckpointWarning`, and reported to the run directory,
which ``limitdyn show`` lists) and that simulation is recomputed from the start, so a
resume always finishes. A checkpoint path given explicitly (``checkpoint=`` in Python) is
the user's: one written by a different run raises :class:`CheckpointError` instead.

Python use::

    res = ld.simulate_sgd(prob, hp, key, 4096, 10**6, checkpoint="run.ckpt.npz")
    # killed? the same call again continues from the last chunk.

Experiments run by the CLI checkpoint every simulation automatically (see
:func:`auto_checkpoints`); ``limitdyn run --resume DIR`` continues them.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

FORMAT = 3            # 2: with a content hash; 3: a file hash, growing records in side files
# a checkpoint file is an npz archive, then this, then the SHA-256 (hex) of the archive
_TRAILER = b"\nlimitdyn-checkpoint-sha256:"
_FINGERPRINT = 1      # version of what fingerprint() hashes (independent of the file layout)
_RUN_FILE = re.compile(r"^run-(\d+)\.npz$")
_SET_ASIDE = re.compile(r"^run-(\d+)\.npz\.bad-(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, or written by a different run."""


class CheckpointWarning(UserWarning):
    """A checkpoint failed its check and was set aside; its simulation is recomputed."""


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _host(x: Any) -> np.ndarray:
    return np.asarray(jax.random.key_data(x) if _is_key(x) else x)


def _describe(obj: Any) -> str:
    """A process-independent description of a static object (no memory addresses)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def fingerprint(static: Any, *trees: Any) -> str:
    """SHA-256 of a static description and of every array leaf (shape, dtype and bytes)."""
    h = hashlib.sha256(f"limitdyn-checkpoint-{_FINGERPRINT}|{_describe(static)}".encode())
    for tree in trees:
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        h.update(str(treedef).encode())
        for leaf in leaves:
            a = np.ascontiguousarray(_host(leaf))
            h.update(f"{a.shape}{a.dtype}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Growing:
    """A leaf of the carry filled one slot along ``axis`` at a time, its first ``filled``
    slots final: a checkpoint appends new slots to a side file instead of rewriting it.
    (Not a pytree: it stands for one leaf in the ``filled`` tree handed to :func:`save`.)"""

    filled: int
    axis: int


class AppendLog:
    """What the side file of one checkpoint holds, as far as its last save or load vouches
    (``state``: the checkpoint's own record of it, see :func:`save`). The runner keeps one
    per run and hands it to every :func:`save` (which updates it) and to :func:`load`
    (which fills it), so a save appends only what is new."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}


def side_file(path: str) -> str:
    """The side file holding the growing records of the checkpoint at ``path``."""
    return f"{path}.kept"


def _block(a: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    """Slots ``start … stop − 1`` along ``axis``, C-contiguous in the leaf's own layout (no
    copy when they are the whole leaf, as for a run saved once, at its end)."""
    return np.ascontiguousarray(a[(slice(None),) * axis + (slice(start, stop),)])


def _slot_bytes(leaf: dict[str, Any]) -> int:
    shape, axis = leaf["shape"], leaf["axis"]
    rest = shape[:axis] + shape[axis + 1:]
    return int(np.prod(rest, dtype=np.int64)) * np.dtype(leaf["dtype"]).itemsize


def _register(path: str) -> None:
    """Record a file written beside an automatic checkpoint in the run directory's ledger."""
    scope = _SCOPE.get()
    if scope is not None and scope.register is not None:
        scope.register(path)


def _append(path: str, growing: dict[int, tuple[np.ndarray, Growing]],
            previous: dict[str, Any]) -> dict[str, Any]:
    """Bring the side file to the filled slots of every growing leaf: keep the prefix the
    previous state vouches for (cutting off anything after it), append one block with the
    new slots of every leaf, fsync. Returns the new state (``{}``: no growing leaf)."""
    if not growing:
        return {}
    side = side_file(path)
    leaves = []
    for i, (a, g) in sorted(growing.items()):
        filled, axis = int(g.filled), int(g.axis)
        if not (0 <= axis < a.ndim and 0 <= filled <= a.shape[axis]):
            raise ValueError(f"growing leaf {i} of shape {a.shape} cannot have {filled} "
                             f"filled slots along axis {axis}")
        leaves.append({"leaf": i, "shape": list(a.shape), "dtype": a.dtype.str, "axis": axis,
                       "slots": filled})
    layout = [{k: v for k, v in e.items() if k != "slots"} for e in leaves]
    before = {e["leaf"]: e["slots"] for e in previous.get("leaves", [])}
    kept = previous.get("bytes", 0)
    try:
        usable = (previous.get("file") == os.path.basename(side)
                  and [{k: v for k, v in e.items() if k != "slots"}
                       for e in previous["leaves"]] == layout
                  and all(before[e["leaf"]] <= e["slots"] for e in leaves)
                  and os.path.getsize(side) >= kept)
    except OSError:        # the side file is gone: write it anew
        usable = False
    if not usable:
        before, kept, blocks = dict.fromkeys(before, 0), 0, []
        _register(side)
    else:
        blocks = list(previous["blocks"])
    ranges = [[e["leaf"], before.get(e["leaf"], 0), e["slots"]] for e in leaves
              if e["slots"] > before.get(e["leaf"], 0)]
    digest, size = hashlib.sha256(), 0
    with open(side, "r+b" if kept else "wb") as fh:
        fh.truncate(kept)
        fh.seek(kept)
        for i, start, stop in ranges:      # written and hashed part by part, no joined copy
            part = _block(growing[i][0], growing[i][1].axis, start, stop)
            digest.update(part)
            fh.write(part)
            size += part.nbytes
        fh.flush()
        os.fsync(fh.fileno())
    if ranges:
        blocks.append({"offset": kept, "sha256": digest.hexdigest(), "slots": ranges})
    return {"file": os.path.basename(side), "bytes": kept + size, "leaves": leaves,
            "blocks": blocks}


def save(path: str, carry: Any, next_event: int, n_events: int, step: int, run_id: str, *,
         filled: Any = None, log: AppendLog | None = None) -> None:
    """Write the carry after ``next_event`` of ``n_events`` events, atomically.

    ``filled``: a tree like ``carry`` whose leaves are :class:`Growing` for a growing leaf
    (its final slots go to its side file, only the ones not yet there appended) and
    anything else for a leaf saved whole. ``log``: what earlier saves of this run appended;
    it is updated once the checkpoint is in place.
    """
    leaves = jax.tree_util.tree_leaves(carry)
    host = [_host(x) for x in leaves]
    marks = [None] * len(host) if filled is None else jax.tree_util.tree_leaves(filled)
    if len(marks) != len(host):
        raise ValueError("filled must have one entry per leaf of the carry")
    log = AppendLog() if log is None else log
    growing = {i: (a, g) for i, (a, g) in enumerate(zip(host, marks, strict=True))
               if isinstance(g, Growing)}
    state = _append(path, growing, log.state)
    stored = [np.zeros((0,), a.dtype) if i in growing else a for i, a in enumerate(host)]
    appended = json.dumps(state, sort_keys=True)
    arrays = {f"leaf_{i}": a for i, a in enumerate(stored)}
    meta = np.array([FORMAT, next_event, n_events, step], dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, meta=meta, fingerprint=np.array(run_id),
             appended=np.frombuffer(appended.encode(), np.uint8),
             **arrays)
    payload = buffer.getbuffer()
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.write(_TRAILER + hashlib.sha256(payload).hexdigest().encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):   # the temporary file this call created
            os.remove(tmp)
        raise
    log.state = state


def _read(path: str) -> tuple[dict[str, int], str, list[np.ndarray], dict[str, Any]]:
    """Progress, fingerprint, arrays and appended blocks of a checkpoint whose file hash
    checks out (the side files are checked when they are read, by :func:`_read_side`)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} is unreadable ({err.strerror})") from None
    cut = len(raw) - len(_TRAILER) - 64
    if cut < 0 or raw[cut:cut + len(_TRAILER)] != _TRAILER:
        raise CheckpointError(f"checkpoint {path} is unreadable (no file hash at its end: "
                              "cut short, or not a limitdyn checkpoint)")
    if hashlib.sha256(raw[:cut]).hexdigest().encode() != raw[cut + len(_TRAILER):]:
        raise CheckpointError(f"checkpoint {path} fails its integrity check (file hash "
                              "mismatch: the file was changed after it was written)")
    try:
        with np.load(io.BytesIO(raw[:cut]), allow_pickle=False) as data:
            meta = np.asarray(data["meta"])
            if meta.shape != (4,) or meta.dtype != np.int64:
                raise ValueError(f"meta has shape {meta.shape} and dtype {meta.dtype}")
            fmt, next_event, n_events, step = (int(v) for v in meta)
            if fmt != FORMAT:
                raise CheckpointError(f"checkpoint {path} has format {fmt}, this limitdyn "
                                      f"reads {FORMAT}")
            run_id = str(data["fingerprint"])
            appended = np.asarray(data["appended"])
            if appended.dtype != np.uint8 or appended.ndim != 1:
                raise ValueError("the list of appended records is not a byte string")
            appended = appended.tobytes().decode()
            names = sorted((f for f in data.files if f.startswith("leaf_")),
                           key=lambda f: int(f[5:]))
            if names != [f"leaf_{i}" for i in range(len(names))]:
                raise ValueError("the state arrays are not numbered leaf_0 … leaf_n")
            arrays = [data[f] for f in names]
    except CheckpointError:
        raise
    except Exception as err:   # zip/npz/format errors of every kind mean "corrupt"
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(err).__name__}: "
                              f"{str(err)[:160]})") from None
    if not 0 <= next_event <= n_events or step < 0:
        raise CheckpointError(f"checkpoint {path} has impossible progress "
                              f"{next_event}/{n_events} at step {step}")
    state = _appended_state(path, appended, len(arrays))
    return ({"next_event": next_event, "n_events": n_events, "step": step}, run_id, arrays,
            state)


def _appended_state(path: str, text: str, n_leaves: int) -> dict[str, Any]:
    """What a checkpoint says its side file holds, checked for consistency: every leaf's
    slot ranges tile its filled slots, and the blocks tile the vouched-for bytes."""
    try:
        state = json.loads(text)
        if not isinstance(state, dict):
            raise ValueError("not an object")
        if not state:
            return {}
        if not isinstance(state["file"], str):
            raise ValueError("the side file's name is not a string")
        leaves = {}
        for e in state["leaves"]:
            shape, axis, slots = e["shape"], e["axis"], e["slots"]
            if not (isinstance(e["leaf"], int) and 0 <= e["leaf"] < n_leaves
                    and e["leaf"] not in leaves
                    and all(isinstance(n, int) and n >= 0 for n in shape)
                    and isinstance(axis, int) and 0 <= axis < len(shape)
                    and isinstance(slots, int) and 0 <= slots <= shape[axis]):
                raise ValueError(f"entry {str(e)[:60]} is inconsistent")
            np.dtype(e["dtype"])
            leaves[e["leaf"]] = e
        reached, offset = dict.fromkeys(leaves, 0), 0
        for block in state["blocks"]:
            if block["offset"] != offset or not isinstance(block["sha256"], str):
                raise ValueError("the blocks do not follow each other")
            for leaf, start, stop in block["slots"]:
                if reached.get(leaf) != start or not start < stop:
                    raise ValueError(f"the slots of leaf {leaf} do not follow each other")
                reached[leaf] = stop
                offset += (stop - start) * _slot_bytes(leaves[leaf])
        if offset != state["bytes"] or any(reached[i] != e["slots"] for i, e in leaves.items()):
            raise ValueError("the blocks do not add up to the filled slots")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError,
            RecursionError) as err:
        raise CheckpointError(f"checkpoint {path} has an unreadable list of appended "
                              f"records ({str(err)[:120]})") from None
    return state


def _read_side(path: str, state: dict[str, Any], like: dict[int, np.ndarray]
               ) -> dict[int, np.ndarray]:
    """The growing leaves rebuilt from the side file: the vouched-for slots, checked block
    by block, over the fresh run's values (``like``) for the slots not yet filled."""
    side = side_file(path)
    if state["file"] != os.path.basename(side):
        raise CheckpointError(f"checkpoint {path} names side file {state['file'][:80]!r}, "
                              f"not its own {os.path.basename(side)!r}")
    leaves = {e["leaf"]: e for e in state["leaves"]}
    for i, e in leaves.items():
        if tuple(e["shape"]) != like[i].shape or np.dtype(e["dtype"]) != like[i].dtype:
            raise CheckpointError(f"checkpoint {path} does not match this run's state layout")
    try:
        if os.path.islink(side) or not os.path.isfile(side):
            raise CheckpointError(f"{side}, the kept records of checkpoint {path}, is missing "
                                  "or not a regular file")
        with open(side, "rb") as fh:
            raw = fh.read(state["bytes"])
    except OSError as err:
        raise CheckpointError(f"{side} is unreadable ({err.strerror})") from None
    if len(raw) != state["bytes"]:
        raise CheckpointError(f"{side} holds {len(raw)} bytes, its checkpoint vouches for "
                              f"{state['bytes']}")
    out = {i: np.array(like[i], copy=True) for i in leaves}
    for block in state["blocks"]:
        offset = block["offset"]
        sizes = [(stop - start) * _slot_bytes(leaves[i]) for i, start, stop in block["slots"]]
        if hashlib.sha256(raw[offset:offset + sum(sizes)]).hexdigest() != block["sha256"]:
            raise CheckpointError(f"{side} fails its integrity check (bytes {offset}… changed "
                                  "after they were written)")
        for (i, start, stop), size in zip(block["slots"], sizes, strict=True):
            axis, shape = leaves[i]["axis"], list(leaves[i]["shape"])
            shape[axis] = stop - start
            data = np.frombuffer(raw, out[i].dtype, size // out[i].dtype.itemsize, offset)
            out[i][(slice(None),) * axis + (slice(start, stop),)] = data.reshape(shape)
            offset += size
    return out


def peek(path: str) -> dict[str, int]:
    """Progress stored in a checkpoint: next_event, n_events, step (CheckpointError if the
    file is unreadable or fails its integrity check)."""
    return _read(path)[0]


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False        # this process is not writing it now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _remove_stale_temporaries(path: str) -> None:
    """``PATH.tmp-PID`` files a killed writer of this very checkpoint left (its process is
    gone); names are matched literally, never as a pattern."""
    directory, base = os.path.split(os.path.abspath(path))
    prefix = base + ".tmp-"
    try:
        with os.scandir(directory) as it:
            names = [e.name for e in it if e.name.startswith(prefix)
                     and e.name[len(prefix):].isdigit() and e.is_file(follow_symlinks=False)]
    except OSError:
        return
    for name in names:
        if not _pid_alive(int(name[len(prefix):])):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))


def _set_aside(path: str, reason: str, scope: _Scope) -> None:
    """Move a failed checkpoint out of the way (never delete it) and report it."""
    k = 1
    while os.path.lexists(f"{path}.bad-{k}"):
        k += 1
    moved = f"{path}.bad-{k}"
    if scope.register is not None:
        scope.register(moved)
    os.replace(path, moved)
    _set_aside_side_file(path, k, scope)
    record = {"file": path, "moved_to": moved, "reason": reason}
    scope.set_aside.append(record)
    if scope.on_set_aside is not None:
        scope.on_set_aside(path, moved, reason)
    warnings.warn(f"{reason}; set aside as {os.path.basename(moved)}, and this simulation "
                  "is recomputed from the start", CheckpointWarning, stacklevel=3)


def _set_aside_side_file(path: str, k: int, scope: _Scope) -> None:
    """Move the side file of a checkpoint set aside beside it (``PATH.kept.bad-K``): the
    recomputed run writes its own, and nothing limitdyn found is deleted."""
    side = side_file(path)
    moved = f"{side}.bad-{k}"
    if not os.path.isfile(side) or os.path.islink(side) or os.path.lexists(moved):
        return
    if scope.register is not None:
        scope.register(moved)
    with contextlib.suppress(OSError):
        os.replace(side, moved)


def load(path: str, template: Any, run_id: str, *, heal: bool | None = None,
         log: AppendLog | None = None) -> tuple[Any, int] | None:
    """The carry and next event stored at ``path``; None when there is no checkpoint.

    ``heal`` (default: True exactly for the paths :func:`auto_checkpoints` hands out): a
    checkpoint that cannot be used is set aside and None returned, so the simulation starts
    again; otherwise that raises. Growing leaves are read back from their side files
    (``log``, when given, learns what those hold, for the next :func:`save`).

    Raises:
        CheckpointError: the file or a side file is unreadable, fails its integrity check
            or belongs to a different run (unless healing).
    """
    scope = _SCOPE.get()
    if heal is None:
        heal = scope is not None and os.path.abspath(path) in scope.issued
    if not (heal and scope is not None and scope.owned):
        _remove_stale_temporaries(path)     # a run directory's own resume does it otherwise
    if not os.path.lexists(path):
        return None
    leaves, treedef = jax.tree_util.tree_flatten(template)
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            raise CheckpointError(f"checkpoint {path} is not a regular file")
        progress, stored_id, arrays, state = _read(path)
        if stored_id != run_id:
            raise CheckpointError(f"checkpoint {path} was written by a different run (other "
                                  "problem, hyperparameters, seed, sizes or schedule); delete "
                                  "it or choose another checkpoint path")
        growing = {e["leaf"] for e in state.get("leaves", [])}
        if len(arrays) != len(leaves) or any(
                i not in growing and (a.shape != _host(like).shape
                                      or a.dtype != _host(like).dtype)
                for i, (a, like) in enumerate(zip(arrays, leaves, strict=False))):
            raise CheckpointError(f"checkpoint {path} does not match this run's state layout")
        if progress["n_events"] <= 0 or progress["next_event"] > progress["n_events"]:
            raise CheckpointError(f"checkpoint {path} has impossible progress")
        if growing:
            for i, a in _read_side(path, state, {i: _host(leaves[i]) for i in growing}).items():
                arrays[i] = a
    except CheckpointError as err:
        if not heal or scope is None:
            raise
        _set_aside(path, str(err), scope)
        return None
    if log is not None:
        log.state = state
    restored = []
    for array, like in zip(arrays, leaves, strict=True):
        value = (jax.random.wrap_key_data(array, impl=jax.random.key_impl(like))
                 if _is_key(like) else array)
        restored.append(jax.device_put(value, like.sharding))   # same placement as a fresh run
    return jax.tree_util.tree_unflatten(treedef, restored), progress["next_event"]


# --- automatic checkpoints for every simulation inside a scope (used by the CLI) ---------

DEFAULT_EVERY = 60.0     # seconds between timed checkpoints


class _Scope:
    def __init__(self, directory: str, register: Callable[[str], Any] | None = None,
                 on_set_aside: Callable[[str, str, str], Any] | None = None,
                 every: float | None = None):
        self.directory = os.path.abspath(directory)
        self.every = every
        self.count = 0
        self.issued: set[str] = set()
        self.register, self.on_set_aside = register, on_set_aside
        self.owned = register is not None    # a run directory cleans its own temporaries
        self.set_aside: list[dict[str, str]] = []

    def next_path(self) -> str:
        path = os.path.join(self.directory, f"run-{self.count:03d}.npz")
        self.count += 1
        if self.register is not None:    # recorded before anything is written there
            self.register(path)
        self.issued.add(path)
        return path


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("checkpoints",
                                                                       default=None)


@contextlib.contextmanager
def auto_checkpoints(directory: str, *, register: Callable[[str], Any] | None = None,
                     on_set_aside: Callable[[str, str, str], Any] | None = None,
                     every: float | None = None) -> Iterator[_Scope]:
    """Inside this scope every ensemble run without its own ``checkpoint=`` is checkpointed
    to ``directory/run-NNN.npz``, numbered in call order.

    An experiment calls its simulations in a fixed order, so on resume call *n* finds its
    own checkpoint again (the fingerprint refuses any other, and a refused or damaged
    checkpoint is set aside and its simulation recomputed). ``register(path)`` is called
    before a file is first written in ``directory`` (a run directory records what it
    writes); ``on_set_aside(path, moved_to, reason)`` when a checkpoint is set aside. Yields
    the scope; its ``set_aside`` lists what was set aside. ``every``: seconds between timed
    checkpoints of the simulations inside (default :data:`DEFAULT_EVERY`; 0: every chunk).
    """
    os.makedirs(directory, exist_ok=True)
    scope = _Scope(directory, register, on_set_aside, every)
    token = _SCOPE.set(scope)
    try:
        yield scope
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


def interval(every: float | None) -> float:
    """Seconds between timed checkpoints: the caller's, the scope's, or the default."""
    if every is None:
        scope = _SCOPE.get()
        every = scope.every if scope is not None and scope.every is not None else DEFAULT_EVERY
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not every >= 0:
        raise ValueError(f"checkpoint_every must be a number of seconds >= 0, got {every!r}")
    return float(every)


class StopRequest:
    """SIGINT/SIGTERM handling for checkpointed runs.

    Installed for a whole command-line run (and by every checkpointed simulation that runs
    outside one). While a simulation's kernel loop runs (:func:`deferred_stop`), a signal is
    only noted: the kernel call in flight finishes, the checkpoint is written, and then the
    run stops — KeyboardInterrupt for SIGINT, SystemExit(128 + 15) for SIGTERM — so a resume
    continues from that moment, not from the last timed save. Outside a kernel loop (theory,
    figures) the signal stops the run at once. A second signal always stops at once.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferring = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._old[sig] = signal.signal(sig, self._note)
                except (ValueError, OSError):       # not allowed here: leave it
                    pass
        token = _STOP.set(self)
        self._token = token
        return self

    def _note(self, signum, frame) -> None:
        first = self.signum is None
        self.signum = signum
        if not first or not self.deferring:
            self.raise_now()

    def __exit__(self, *exc) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
        _STOP.reset(self._token)

    def raise_now(self) -> None:
        import signal

        if self.signum == signal.SIGTERM:
            raise SystemExit(128 + signal.SIGTERM)
        raise KeyboardInterrupt


_STOP: contextvars.ContextVar[StopRequest | None] = contextvars.ContextVar("limitdyn_stop",
                                                                          default=None)


@contextlib.contextmanager
def deferred_stop() -> Iterator[StopRequest]:
    """Inside: signals are noted, not raised (the caller checks ``signum`` between kernel
    calls and calls ``raise_now`` after saving). Uses the run's :class:`StopRequest` when
    one is installed, else installs one for the block."""
    current = _STOP.get()
    if current is None:
        with StopRequest() as req:
            req.deferring = True
            yield req
        return
    previous = current.deferring
    current.deferring = True
    try:
        yield current
    finally:
        current.deferring = previous


def progress_of(directory: str) -> list[dict[str, Any]]:
    """Progress of every checkpoint in a directory (for ``limitdyn show``).

    Files are found by listing the directory and matching names (never a glob pattern, so a
    directory named ``r[ab]`` does not read ``ra``). A checkpoint that fails its check has
    an ``error``; one set aside earlier (``run-NNN.npz.bad-K``) has ``set_aside``.
    """
    try:
        with os.scandir(directory) as it:
            names = [e.name for e in it if e.is_file(follow_symlinks=False)]
    except OSError:
        return []
    out = []
    for name in sorted(names):
        if _RUN_FILE.match(name):
            try:
                out.append({"file": name} | peek(os.path.join(directory, name)))
            except CheckpointError as err:
                out.append({"file": name, "error": str(err)})
        elif _SET_ASIDE.match(name):
            out.append({"file": name, "set_aside": True})
    return out
