"""Self-describing run directories: every file written atomically, a completion marker last.

A run directory is written in place, in this order::

    .limitdyn-lock  an exclusive lock, held by the writing process for the whole run
    .limitdyn-run   limitdyn's marker and the list of every file limitdyn wrote there
    run.json        what was asked for (experiment, seed, configuration)
    checkpoints/    the state of every simulation, saved after each chunk (while running)
    data.npz, *.png, report.md
    summary.json    results, verdicts, timings, environment
    COMPLETE        the completion marker: SHA-256 of every file above; written last

Each file goes to ``NAME.tmp-PID`` and is renamed into place, so no file is ever seen
half-written. A run killed at any moment leaves a directory that :func:`inspect` calls
*partial* (``run.json`` without ``COMPLETE``; ``limitdyn run --resume DIR`` continues it
from its checkpoints) and a finished one *complete*; a marker whose hashes no longer
match, or unreadable metadata, makes it *corrupt*.

Nothing is ever removed from a run directory except by :func:`remove_owned`, and that only
removes files listed in the directory's own ``.limitdyn-run`` (or temporary files of those,
written by a process listed there as a writer). A directory without that marker is never
touched; a listed name that has become a symbolic link, a directory or anything but a
regular file is refused. Every path is used literally (no glob patterns): a run directory
named ``r[ab]`` never touches ``ra``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .config import clip
from .result import _json_default

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None

FORMAT = 1
MANIFEST, SUMMARY, MARKER, CHECKPOINTS = "run.json", "summary.json", "COMPLETE", "checkpoints"
LEDGER, LOCK = ".limitdyn-run", ".limitdyn-lock"
_TEMP = re.compile(r"^(?P<base>.+)\.tmp-(?P<pid>[0-9]{1,10})$")
_NAME_MAX, _PATH_MAX = 255, 4095


class OutputError(ValueError):
    """The output directory cannot be used."""


class BusyError(OutputError):
    """Another limitdyn process holds the run directory's lock."""


def _where(path: str) -> str:
    return clip(os.fspath(path), 120)


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
        # Only the temporary file this very call created (a kill leaves it; resume removes it).
        with contextlib.suppress(OSError):
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


# --- the marker and the list of files limitdyn wrote --------------------------------------------

def _check_rel(target: str, rel: Any) -> str:
    """A name listed in the ledger: a file at the top level or in checkpoints/, nothing else."""
    parts = rel.split("/") if isinstance(rel, str) else []
    if (not parts or len(parts) > 2 or any(p in ("", ".", "..") or "\x00" in p for p in parts)
            or (len(parts) == 2 and parts[0] != CHECKPOINTS)):
        raise OutputError(f"{_where(target)}/{LEDGER} lists {clip(repr(rel), 80)}, which is "
                          "not a file limitdyn writes; refusing to touch the directory")
    return rel


def read_ledger(target: str) -> dict[str, Any] | None:
    """The directory's ``.limitdyn-run`` (None when there is none; OutputError when bad)."""
    path = os.path.join(target, LEDGER)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise OutputError(f"cannot read {_where(path)}: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise OutputError(f"{_where(path)} is not a regular file; refusing to touch "
                          f"{_where(target)}")
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, ValueError, RecursionError) as err:
        raise OutputError(f"limitdyn's marker {_where(path)} is unreadable "
                          f"({clip(str(err), 80)}); refusing to touch the directory") from None
    if (not isinstance(obj, dict) or obj.get("limitdyn") != "run-directory"
            or not isinstance(obj.get("files"), list)
            or not all(isinstance(p, int) for p in obj.get("writers", []))):
        raise OutputError(f"{_where(path)} is not limitdyn's marker; refusing to touch "
                          f"{_where(target)}")
    for rel in obj["files"]:
        _check_rel(target, rel)
    obj.setdefault("writers", [])
    obj.setdefault("set_aside", [])
    return obj


def _open_dir(name: str, dir_fd: int | None = None) -> int:
    """A directory file descriptor, refusing a symbolic link."""
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                   dir_fd=dir_fd)


def stale_temporaries(target: str, ledger: dict[str, Any]) -> list[str]:
    """Temporary files (``NAME.tmp-PID``) left in ``target`` by a killed writer: NAME is a
    file the ledger lists and PID a process the ledger lists as a writer of this run."""
    listed = set(ledger["files"]) | {LEDGER}
    writers = set(ledger.get("writers", []))
    out = []
    for sub in ("", CHECKPOINTS):
        try:
            with os.scandir(os.path.join(target, sub) if sub else target) as it:
                names = [e.name for e in it]
        except OSError:
            continue
        for name in names:
            m = _TEMP.match(name)
            rel = f"{sub}/{name}" if sub else name
            base = f"{sub}/{m['base']}" if (m and sub) else (m["base"] if m else None)
            if m and base in listed and int(m["pid"]) in writers:
                out.append(rel)
    return sorted(out)


def remove_owned(target: str, names: Iterable[str] | None = None, *,
                 ledger: dict[str, Any] | None = None, dry_run: bool = False) -> list[str]:
    """Remove files limitdyn wrote in the run directory ``target`` — the one way anything in a
    run directory is ever deleted.

    ``names`` (relative paths; default: every listed file except the lock and the ledger)
    must each be listed in the directory's ``.limitdyn-run`` or be a temporary file of a
    listed one written by a listed writer. The directory and ``checkpoints/`` are opened
    without following symbolic links; each file must be a regular file. Everything is
    checked before anything is removed: any other case is a one-line :class:`OutputError`
    naming the path, and nothing is touched. Returns the paths removed (or, with
    ``dry_run``, that would be).
    """
    target = os.path.abspath(target)
    try:
        tfd = _open_dir(target)
    except OSError as err:
        reason = ("is a symbolic link" if err.errno == errno.ELOOP
                  else f"cannot be opened ({err.strerror})")
        raise OutputError(f"{_where(target)} {reason}; limitdyn removes nothing there") from None
    try:
        ledger = read_ledger(target) if ledger is None else ledger
        if ledger is None:
            raise OutputError(f"{_where(target)} carries no limitdyn marker ({LEDGER}): it is "
                              "not provably a limitdyn run directory, so nothing there is "
                              "removed")
        listed = set(ledger["files"]) | {LEDGER}
        temps = set(stale_temporaries(target, ledger))
        wanted = (sorted(listed - {LOCK, LEDGER}) if names is None else sorted(set(names)))
        plan: list[tuple[str, str]] = []
        dirs: dict[str, int | None] = {"": tfd}
        try:
            for rel in wanted:
                if rel not in listed and rel not in temps:
                    raise OutputError(f"refusing to remove {_where(os.path.join(target, rel))}: "
                                      f"limitdyn did not write it (not listed in {LEDGER})")
                _check_rel(target, rel)
                sub, _, name = rel.rpartition("/")
                if sub not in dirs:
                    try:
                        dirs[sub] = _open_dir(sub, dir_fd=tfd)
                    except FileNotFoundError:
                        dirs[sub] = None
                    except OSError as err:
                        if err.errno in (errno.ELOOP, errno.ENOTDIR):
                            raise OutputError(
                                f"{_where(os.path.join(target, sub))} is not a directory "
                                "limitdyn made (a symbolic link or a file); refusing to "
                                "remove anything through it") from None
                        raise
                if dirs[sub] is None:
                    continue
                try:
                    info = os.stat(name, dir_fd=dirs[sub], follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISLNK(info.st_mode):
                    raise OutputError(f"{_where(os.path.join(target, rel))} is a symbolic link, "
                                      "which limitdyn never writes; remove it yourself")
                if not stat.S_ISREG(info.st_mode):
                    raise OutputError(f"{_where(os.path.join(target, rel))} is not a regular "
                                      "file; limitdyn did not make it, remove it yourself")
                plan.append((sub, name))
            if not dry_run:
                for sub, name in plan:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=dirs[sub])
        finally:
            for sub, fd in dirs.items():
                if sub and fd is not None:
                    os.close(fd)
        return [os.path.join(target, s, n) if s else os.path.join(target, n) for s, n in plan]
    finally:
        os.close(tfd)


def _rmdir_if_empty(path: str) -> None:
    """Remove an empty directory (never anything in it; a symbolic link is left alone)."""
    with contextlib.suppress(OSError):
        if not os.path.islink(path):
            os.rmdir(path)


# --- the lock ----------------------------------------------------------------------------------

def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode("ascii").strip() or "x")
    return None


def lock_holder(target: str) -> int | None:
    """The pid holding the run directory's lock (None when nobody does).

    A lock held by this very process through another descriptor reports ``os.getpid()``.
    """
    if fcntl is None:  # pragma: no cover
        return None
    try:
        fd = os.open(os.path.join(target, LOCK), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            pid = _read_pid(fd)
            return -1 if pid is None else pid
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _busy(target: str, pid: int | None) -> BusyError:
    who = "another limitdyn process" + (f" (pid {pid})" if pid and pid > 0 else "")
    return BusyError(f"{_where(target)} is in use by {who}, which holds its lock; wait for "
                     "it to finish, or choose another --out")


# --- checks before anything is written ---------------------------------------------------------

def _check_name_lengths(path: str) -> None:
    raw = os.fsencode(os.path.abspath(path))
    if len(raw) > _PATH_MAX:
        raise OutputError(f"--out {_where(path)}: the path is {len(raw)} bytes long; the limit "
                          f"is {_PATH_MAX}")
    for part in raw.split(b"/"):
        if len(part) > _NAME_MAX:
            raise OutputError(f"--out {_where(path)}: a name in it is {len(part)} bytes long; "
                              f"the limit is {_NAME_MAX}")


def check_target(path: str, overwrite: bool) -> None:
    """Refuse an unusable ``--out`` before any work is done (and without changing anything).

    Refused: an empty name, a symbolic link, a name too long, a non-directory, a directory
    held by another limitdyn process, a non-empty directory without ``overwrite``, and —
    even with ``overwrite`` — a directory without limitdyn's marker or whose listed files
    include anything but regular files. A place that cannot be written is refused here or
    when the directory is made.
    """
    if not path:
        raise OutputError("--out must name a directory, got an empty string")
    where = _where(path)
    try:
        _check_name_lengths(path)
        if os.path.islink(path):
            raise OutputError(f"--out {where} is a symbolic link (to "
                              f"{clip(os.readlink(path), 80)}); limitdyn writes only into a "
                              "real directory: give the link's target itself")
        if os.path.lexists(path):
            if not os.path.isdir(path):
                raise OutputError(f"--out {where} exists and is not a directory")
            holder = lock_holder(path)
            if holder is not None:
                raise _busy(path, holder)
            try:
                if set(os.listdir(path)) - {LOCK}:
                    if not overwrite:
                        raise OutputError(f"--out {where} is not empty; pass --overwrite to "
                                          "replace a limitdyn run there (or --resume to "
                                          "continue a partial run)")
                    if read_ledger(path) is None:
                        raise OutputError(f"--out {where} is not a limitdyn run directory (no "
                                          f"{LEDGER} marker): --overwrite only replaces "
                                          "those; choose another --out")
                    remove_owned(path, dry_run=True)
            except OutputError:
                holder = lock_holder(path)   # a writer that started while we looked
                if holder is not None:
                    raise _busy(path, holder) from None
                raise
            return
        ancestor = os.path.dirname(os.path.abspath(path))
        while not os.path.lexists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            raise OutputError(f"--out {where}: {_where(ancestor)} is not a directory")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise OutputError(f"--out {where}: cannot write to {_where(ancestor)}")
    except OSError as err:
        raise OutputError(f"cannot use --out {where}: {err.strerror or err}") from None


class RunDirectory:
    """A run's output directory (see the module docstring for its life cycle).

    Creating one takes the directory's exclusive lock (:class:`BusyError` when another
    process holds it) and keeps it until :meth:`close` or the end of the process.

    Args:
        target: the directory.
        manifest: what the run was asked to do; written as ``run.json`` unless resuming.
        resume: continue a partial run in ``target`` (keeps its checkpoints; removes the
            temporary files its killed writers left).
        overwrite: replace the limitdyn run in ``target`` (only the files it lists).
    """

    def __init__(self, target: str, manifest: dict[str, Any] | None = None, *,
                 resume: bool = False, overwrite: bool = False):
        self.target = os.path.abspath(target)
        self.arrays: dict[str, np.ndarray] = {}
        self.figures: list[str] = []
        self._lock_fd: int | None = None
        self._lock_made = self._dir_made = False
        self.ledger: dict[str, Any] = {}
        if resume:
            self._open_existing()
        else:
            self._create(manifest, overwrite)

    # -- opening -------------------------------------------------------------------------------

    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        path = os.path.join(self.target, LOCK)
        for _ in range(5):
            existed = os.path.lexists(path)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise OutputError(f"cannot lock {_where(path)}: {err.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = _read_pid(fd)
                os.close(fd)
                raise _busy(self.target, pid) from None
            try:    # the file may have been removed (and another made) before we locked it
                same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self._lock_fd, self._lock_made = fd, not existed
                return
            os.close(fd)
        raise _busy(self.target, None)

    def _create(self, manifest: dict[str, Any] | None, overwrite: bool) -> None:
        check_target(self.target, overwrite)
        try:
            os.makedirs(os.path.dirname(self.target), exist_ok=True)
            try:
                os.mkdir(self.target)
                self._dir_made = True
            except FileExistsError:
                pass
        except OSError as err:
            raise OutputError(f"cannot create --out {_where(self.target)}: "
                              f"{err.strerror}") from None
        self._lock()
        try:
            entries = set(os.listdir(self.target)) - {LOCK}
            if entries:       # checked again under the lock
                old = read_ledger(self.target) if overwrite else None
                if old is None:
                    raise OutputError(f"--out {_where(self.target)} is not empty" + (
                        f" and carries no limitdyn marker ({LEDGER})" if overwrite else
                        "; pass --overwrite to replace a limitdyn run there"))
                remove_owned(self.target, [*sorted(set(old["files"]) - {LOCK, LEDGER}),
                                           *stale_temporaries(self.target, old)], ledger=old)
                _rmdir_if_empty(self.checkpoints)
            self.ledger = {"limitdyn": "run-directory", "format": FORMAT, "files": [LOCK],
                           "writers": [os.getpid()], "set_aside": []}
            self._save_ledger()
        except BaseException:
            self._abandon()
            raise
        try:
            if os.path.islink(self.checkpoints):
                raise OutputError(f"{_where(self.checkpoints)} is a symbolic link; refusing to "
                                  "write checkpoints through it")
            os.makedirs(self.checkpoints, exist_ok=True)
            _write_json(self.path(MANIFEST),
                        dict(manifest or {}, format=FORMAT,
                             started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z")))
        except OSError as err:
            self.discard()
            raise OutputError(f"cannot write to {_where(self.target)}: {err.strerror}") from None
        except BaseException:
            self.discard()
            raise

    def _abandon(self) -> None:
        """Undo what _create did before the ledger existed: our own lock file and directory."""
        if self._lock_fd is not None and self._lock_made:
            path = os.path.join(self.target, LOCK)
            with contextlib.suppress(OSError):
                if os.fstat(self._lock_fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:
                    os.unlink(path)      # the empty lock file this process created
        self.close()
        if self._dir_made:
            _rmdir_if_empty(self.target)

    def _open_existing(self) -> None:
        where = _where(self.target)
        if os.path.islink(self.target):
            raise OutputError(f"{where} is a symbolic link; resume the real directory")
        if not os.path.isdir(self.target):
            raise OutputError(f"{where} is not a directory")
        ledger = read_ledger(self.target)
        if ledger is None:
            raise OutputError(f"{where} carries no limitdyn marker ({LEDGER}); it was not "
                              "written by this version of limitdyn and cannot be resumed")
        if os.path.islink(self.checkpoints) or (os.path.lexists(self.checkpoints)
                                                and not os.path.isdir(self.checkpoints)):
            raise OutputError(f"{_where(self.checkpoints)} is not a directory limitdyn made (a "
                              "symbolic link or a file); refusing to write through it")
        self._lock()
        try:     # this process joins the writers when it first writes (see register)
            self.ledger = read_ledger(self.target) or ledger
            stale = stale_temporaries(self.target, self.ledger)
            if stale:
                remove_owned(self.target, stale, ledger=self.ledger)
        except BaseException:
            self.close()
            raise

    # -- the ledger ---------------------------------------------------------------------------

    def _save_ledger(self) -> None:
        _write_json(os.path.join(self.target, LEDGER), self.ledger)

    def register(self, path: str) -> str:
        """Record ``path`` (inside the directory) as a file limitdyn writes; returns it."""
        full = os.path.abspath(path)
        rel = os.path.relpath(full, self.target).replace(os.sep, "/")
        _check_rel(self.target, rel)
        if rel not in self.ledger["files"] or os.getpid() not in self.ledger["writers"]:
            if rel not in self.ledger["files"]:
                self.ledger["files"].append(rel)
            if os.getpid() not in self.ledger["writers"]:   # before any temporary file of ours
                self.ledger["writers"].append(os.getpid())
            self._save_ledger()
        return full

    def note_set_aside(self, original: str, moved: str, reason: str) -> None:
        """Record a checkpoint that failed its check and was moved aside (``show`` lists it)."""
        self.register(moved)
        self.ledger["set_aside"].append({
            "file": os.path.relpath(original, self.target).replace(os.sep, "/"),
            "moved_to": os.path.relpath(moved, self.target).replace(os.sep, "/"),
            "reason": clip(reason, 240), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self._save_ledger()

    @property
    def set_aside(self) -> list[dict[str, str]]:
        return list(self.ledger.get("set_aside", []))

    # -- writing ------------------------------------------------------------------------------

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.target, CHECKPOINTS)

    def path(self, name: str) -> str:
        """The path of ``name`` in the directory, recorded as a file limitdyn writes."""
        return self.register(os.path.join(self.target, name))

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

    def _drop_checkpoints(self) -> None:
        names = [f for f in self.ledger["files"] if f.startswith(CHECKPOINTS + "/")]
        temps = [t for t in stale_temporaries(self.target, self.ledger)
                 if t.startswith(CHECKPOINTS + "/")]
        remove_owned(self.target, [*names, *temps], ledger=self.ledger)
        self.ledger["files"] = [f for f in self.ledger["files"] if f not in names]
        self._save_ledger()
        _rmdir_if_empty(self.checkpoints)

    def commit(self, summary: dict[str, Any]) -> str:
        """Write data.npz, then summary.json, drop the checkpoints, then the marker."""
        _atomic(self.path("data.npz"), lambda fh: np.savez_compressed(fh, **self.arrays), "wb")
        outputs = sorted(f for f in self.ledger["files"]
                         if "/" not in f and f not in (LEDGER, LOCK, MARKER, SUMMARY)
                         and os.path.isfile(os.path.join(self.target, f)))
        summary = dict(summary, files=[*outputs, SUMMARY],
                       completed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        if self.set_aside:
            summary["checkpoints_set_aside"] = self.set_aside
        _write_json(self.path(SUMMARY), summary)
        self._drop_checkpoints()
        hashes = {f: _sha256(os.path.join(self.target, f)) for f in [*outputs, SUMMARY]}
        _write_json(self.path(MARKER), {"format": FORMAT, "sha256": hashes})
        return self.target

    # -- ending -------------------------------------------------------------------------------

    def discard(self) -> None:
        """Remove every file this run wrote (nothing else), then the directory if this run
        made it and it is empty; release the lock. For a run stopped before it computed
        anything worth keeping."""
        if self.ledger:
            temps = stale_temporaries(self.target, self.ledger)
            with contextlib.suppress(OutputError):
                remove_owned(self.target, [*self.ledger["files"], *temps, LEDGER],
                             ledger=self.ledger)
                _rmdir_if_empty(self.checkpoints)
                self.ledger = {}
                self._lock_made = False    # removed above, as a listed file
        self._abandon()

    def close(self) -> None:
        """Release the lock (the kernel does so too when the process ends, even by kill -9)."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """What :func:`inspect` found: ``state`` is complete, partial or corrupt.

    ``running``: the pid of a process writing the directory now (None when none);
    ``set_aside``: checkpoints that failed their check and were moved aside (and their
    simulations recomputed); ``marked``: the directory carries limitdyn's marker.
    """

    state: str
    detail: str
    manifest: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    checkpoints: tuple[dict[str, Any], ...] = ()
    running: int | None = None
    set_aside: tuple[dict[str, Any], ...] = ()
    marked: bool = False


def _read_object(path: str) -> dict[str, Any]:
    """A JSON object from ``path``; ValueError (one line) when unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, ValueError, RecursionError) as err:    # bad JSON, bad UTF-8, too deep
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{os.path.basename(path)} is unreadable: {clip(reason, 120)}"
                         ) from None
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
        if os.path.basename(str(name)) != name or not os.path.isfile(file) \
                or os.path.islink(file):
            return f"{clip(name, 80)} is missing"
        if _sha256(file) != digest:
            return f"{clip(name, 80)} has changed since the run completed"
    return None


def _is_run_directory(path: str) -> bool:
    return any(os.path.lexists(os.path.join(path, f))
               for f in (LEDGER, MANIFEST, SUMMARY, MARKER))


def inspect(path: str) -> RunStatus:
    """Classify a run directory as complete, partial (resumable) or corrupt (read only).

    A checkpoint that fails its integrity check leaves the run *partial*: ``--resume`` sets
    it aside and recomputes that simulation.

    Raises:
        OutputError: ``path`` is not a directory or not a limitdyn run directory.
    """
    from . import checkpoint as ckpt

    where = _where(path)
    try:
        if not os.path.isdir(path):
            raise OutputError(f"{where} is not a directory")
        if not _is_run_directory(path):
            raise OutputError(f"{where} is not a limitdyn run directory (no {MANIFEST}, "
                              f"{SUMMARY} or {MARKER})")
    except OSError as err:
        raise OutputError(f"cannot read {where}: {err.strerror}") from None
    try:
        ledger = read_ledger(path)
    except OutputError as err:
        return RunStatus("corrupt", str(err))
    marked = ledger is not None
    running = lock_holder(path)
    running = None if running == os.getpid() else running
    set_aside = tuple(ledger.get("set_aside", [])) if ledger else ()
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
                return RunStatus("corrupt", problem, manifest, marked=marked)
            summary = _read_object(os.path.join(path, SUMMARY))
            healed = summary.get("checkpoints_set_aside") or []
            return RunStatus("complete", "complete (files verified against the completion "
                             "marker)", manifest, summary, marked=marked,
                             set_aside=tuple(h for h in healed if isinstance(h, dict)))
    except ValueError as err:
        return RunStatus("corrupt", str(err), manifest, marked=marked)
    except OSError as err:
        return RunStatus("corrupt", f"unreadable: {err.strerror}", manifest, marked=marked)
    if manifest is None:
        return RunStatus("corrupt", f"no {MANIFEST} and no {MARKER}: cannot be resumed",
                         running=running, marked=marked)
    progress = tuple(ckpt.progress_of(os.path.join(path, CHECKPOINTS)))
    live = [p for p in progress if not p.get("set_aside")]
    bad = [p for p in live if "error" in p]
    done = sum(p.get("next_event") == p.get("n_events") for p in live if "error" not in p)
    if running is not None:
        head = f"partial (being written now by process {running})"
    else:
        head = "partial (resumable)"
    newest = _newest_checkpoint_age(os.path.join(path, CHECKPOINTS), live)
    detail = (f"{head}: {done} simulation(s) finished"
              + (f", simulation {len(live) - 1} at step {live[-1]['step']}"
                 if live and "error" not in live[-1] and done < len(live) else "")
              + (f"; newest checkpoint written {_age_text(newest)} ago" if newest is not None
                 else "")
              + (f"; {len(bad)} checkpoint(s) fail their check and will be set aside and "
                 "recomputed" if bad else "")
              + ("" if running is not None else
                 f"; continue with `limitdyn run --resume {where}`"))
    return RunStatus("partial", detail, manifest, checkpoints=progress, running=running,
                     set_aside=set_aside, marked=marked)


def _newest_checkpoint_age(directory: str, live: list[dict]) -> float | None:
    """Seconds since the newest checkpoint file of the run was written (None: none)."""
    times = []
    for p in live:
        try:
            st = os.lstat(os.path.join(directory, p["file"]))
        except (OSError, KeyError, TypeError):
            continue
        times.append(st.st_mtime)
    return None if not times else max(0.0, time.time() - max(times))


def _age_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def read_summary(path: str) -> dict[str, Any]:
    """The summary of a complete run directory (OutputError otherwise)."""
    status = inspect(path)
    if status.state != "complete":
        raise OutputError(f"{_where(path)}: {status.detail}")
    return status.summary


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
