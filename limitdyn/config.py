"""Typed experiment configurations: frozen dataclasses, loadable from TOML, overridable.

An experiment's configuration is a frozen dataclass whose fields have simple types
(``int``, ``float``, ``bool``, ``str``, or a tuple of those). A TOML file sets fields by
name (a flat table, or the table named after the experiment); ``--set key=value`` on the
command line sets one field, parsed according to its declared type (lists as ``a,b`` or
``[a, b]``). Unknown keys, wrong types and invalid values raise :class:`ConfigError` with
a one-line message naming the key and what is allowed; values are echoed at most
``ECHO`` characters long.

Every key is described by :func:`describe_fields` (``limitdyn run NAME --help``): its
meaning (``dataclasses.field(metadata={"help": ...})``, else the comment after the field
in the source, else the sentence of the class docstring that names it), type, default,
and the allowed range as the configuration's own ``validate()`` states it.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import reprlib
import stat
import sys
import textwrap
import typing
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ECHO = 200                      # the most characters of a value echoed in a message
MAX_CONFIG_BYTES = 4 << 20      # a configuration file larger than this is refused
INT_RANGE = (-(2 ** 63), 2 ** 63 - 1)   # TOML integers are 64-bit; so are --set ones


class ConfigError(ValueError):
    """A configuration key, type or value is not acceptable."""


# --- short, one-line echoes of user values --------------------------------------------------

def clip(text: str, limit: int = ECHO) -> str:
    """``text`` on one line, at most ``limit`` characters (the middle cut out: ``ab…yz``)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head):]}"


_REPR = reprlib.Repr()
_REPR.maxstring = ECHO
_REPR.maxother = ECHO
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 8


def shown(value: Any) -> str:
    """A short repr of ``value`` for a message: bounded depth, length and size."""
    try:
        text = _REPR.repr(value)
    except Exception:    # a repr that fails (or recurses) must not hide the real error
        text = f"<{type(value).__name__}>"
    return clip(text)


# --- field types and coercion -----------------------------------------------------------------

def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "integer", float: "number", bool: "true/false", str: "string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return (f"a list of {typing.get_args(tp)[0].__name__} (a,b or [a, b] on the command "
                "line)")
    return getattr(tp, "__name__", str(tp))


def _split_list(key: str, tp: Any, text: str) -> list[Any]:
    """The items of a list written on the command line: ``a,b`` or ``[a, b]``."""
    text = text.strip()
    if text.startswith("[") or text.endswith("]"):
        if not (text.startswith("[") and text.endswith("]")):
            raise ConfigError(f"{key} must be {_describe(tp)}, got {shown(text)} (unbalanced "
                              "brackets)")
        try:        # a TOML inline array: quoted strings, numbers, booleans
            value = tomllib.loads(f"v = {text}")["v"]
        except (tomllib.TOMLDecodeError, RecursionError, ValueError):
            value = None
        if isinstance(value, list):
            return [("toml", v) for v in value]
        text = text[1:-1]
    return [("text", p.strip()) for p in text.split(",") if p.strip()]


def _coerce(key: str, tp: Any, value: Any, *, from_text: bool) -> Any:
    """``value`` as type ``tp`` (from a TOML value, or from text after ``--set key=``)."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if from_text:
            parts = _split_list(key, tp, str(value))
            return tuple(_coerce(key, item, p, from_text=(kind == "text")) for kind, p in parts)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be {_describe(tp)}, got {shown(value)}")
        return tuple(_coerce(key, item, p, from_text=False) for p in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if from_text and str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {shown(value)}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {shown(value)}")
        try:
            out = int(str(value).strip().replace("_", "")) if from_text else value
        except ValueError:   # also: more digits than Python converts
            raise ConfigError(f"{key} must be an integer, got {shown(value)}") from None
        if not isinstance(out, int):
            raise ConfigError(f"{key} must be an integer, got {shown(value)}")
        if not INT_RANGE[0] <= out <= INT_RANGE[1]:
            raise ConfigError(f"{key} must be a 64-bit integer (|{key}| < 2^63), got "
                              f"{shown(value)}")
        return out
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {shown(value)}")
        try:
            out = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key} must be a number, got {shown(value)}") from None
        if out != out or out in (float("inf"), float("-inf")):
            raise ConfigError(f"{key} must be a finite number, got {shown(value)}")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {shown(value)}")
        if "\x00" in value:
            raise ConfigError(f"{key} must not contain a NUL character")
        return value
    raise ConfigError(f"{key}: unsupported field type {tp!r}")  # pragma: no cover


def replace(config: Any, values: dict[str, Any], *, from_text: bool = False) -> Any:
    """A copy of ``config`` with ``values`` set (keys checked, values coerced and validated)."""
    types = _field_types(type(config))
    updates = {}
    for key, value in values.items():
        if key not in types:
            raise ConfigError(f"unknown configuration key {shown(key)}; allowed: "
                              f"{', '.join(types)}")
        updates[key] = _coerce(key, types[key], value, from_text=from_text)
    new = dataclasses.replace(config, **updates)
    check = getattr(new, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigError as err:
            raise ConfigError(clip(str(err), 2 * ECHO)) from None
        except (TypeError, ValueError, OverflowError, OSError) as err:
            raise ConfigError(clip(str(err), 2 * ECHO)) from None
    return new


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["key=value", ...]`` → dict; a malformed item raises :class:`ConfigError`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {shown(item)}")
        out[key.strip()] = value.strip()
    return out


def _depth(value: Any, limit: int, level: int = 0) -> int:
    """Nesting depth of lists/dicts in ``value``, counted up to ``limit``."""
    if level >= limit or not isinstance(value, (list, dict)):
        return level
    items = value.values() if isinstance(value, dict) else value
    return max((_depth(v, limit, level + 1) for v in items), default=level + 1)


def load_toml(path: str, section: str | None = None) -> dict[str, Any]:
    """The flat key/value table of a TOML file (or its ``[section]`` if present).

    Refused with :class:`ConfigError` (one line): a missing or unreadable file, anything but
    a regular file (``/dev/zero``, a FIFO, a directory), more than ``MAX_CONFIG_BYTES``,
    invalid UTF-8, malformed TOML, nesting deeper than the parser allows.
    """
    where = clip(path, 120)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {where}") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read config file {where}: "
                          f"{getattr(err, 'strerror', None) or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"config file {where} is not a regular file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {where} is {info.st_size} bytes; the limit is "
                          f"{MAX_CONFIG_BYTES} ({MAX_CONFIG_BYTES >> 20} MiB)")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"cannot read config file {where}: {err.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {where} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {where} is not valid UTF-8 (byte {err.start}: "
                          f"{raw[err.start:err.start + 1]!r})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"malformed TOML in {where}: {clip(str(err))}") from None
    except RecursionError:
        raise ConfigError(f"malformed TOML in {where}: arrays or tables nested too "
                          "deeply") from None
    if _depth(data, 34) > 33:
        raise ConfigError(f"{where}: values nested more than 32 levels deep")
    if section is not None and isinstance(data.get(section), dict):
        data = data[section]
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise ConfigError(f"{where}: unexpected table(s) {shown(', '.join(nested))}; put the "
                          f"keys at the top level or under [{section}]")
    return data


def to_dict(config: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()}


# --- files named by a configuration ------------------------------------------------------------

def check_files(config: Any) -> None:
    """Every string key naming an ``.npz`` file must name a readable ``.npz`` archive.

    A file that is not a regular file (a FIFO would block), not a zip archive, or holds
    pickled objects is refused here, before anything is compiled.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not (isinstance(value, str) and value.lower().endswith(".npz")):
            continue
        where = clip(value, 120)
        try:
            info = os.stat(value)
        except (OSError, ValueError):
            continue               # a missing file is the configuration's own check
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{f.name}: {where} is not a regular file")
        import zipfile

        import numpy as np

        try:
            with np.load(value, allow_pickle=False) as data:
                if not hasattr(data, "files"):
                    raise ValueError("a .npy array, not an .npz archive")
                for name in data.files:   # reads every member: CRC and format checked
                    data[name]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError,
                NotImplementedError, MemoryError) as err:
            reason = clip(f"{type(err).__name__}: {err}", 120)
            raise ConfigError(f"{f.name}: {where} is not a readable .npz file "
                              f"({reason})") from None


# --- memory estimates -------------------------------------------------------------------------

def _largest(value: Any) -> int:
    if isinstance(value, tuple):
        return max((_largest(v) for v in value), default=0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# (allocation, the keys whose product sizes it, bytes per element). The sizes are read from
# any configuration that has the keys (a list key counts with its largest entry); each product
# is one array some experiment allocates.
ALLOCATIONS = (
    ("the data matrix", ("n", "d"), 8),
    ("the ensemble state", ("n_traj", "d"), 16),
    ("the SDE ensemble state", ("sde_n_traj", "d"), 16),
    ("the exact-noise draws of one SDE step", ("sde_n_traj", "n"), 4),
    ("the local-displacement ensemble", ("sweep_traj", "d"), 16),
    ("the landscape paths", ("n_paths", "ks"), 8),
    ("the regression data", ("reg_n", "reg_p"), 8),
    ("the regression paths", ("reg_paths", "reg_p"), 8),
    ("the uv-model ensemble", ("uv_widths", "uv_seeds"), 8),
    ("the network ensemble", ("n_traj", "width", "width"), 8),
)


def memory_requests(config: Any) -> list[tuple[str, int]]:
    """``(what, bytes)`` of the largest arrays a configuration asks for (see ALLOCATIONS)."""
    names = {f.name for f in dataclasses.fields(config)}
    out = []
    for what, keys, itemsize in ALLOCATIONS:
        if not set(keys) <= names:
            continue
        sizes = [_largest(getattr(config, k)) for k in keys]
        if min(sizes) <= 0:
            continue
        total = itemsize
        for s in sizes:
            total *= s
        shape = " × ".join(f"{k}={s}" for k, s in zip(keys, sizes, strict=True))
        out.append((f"{what} ({shape}, {itemsize} B each)", total))
    return out


def check_memory(config: Any, fraction: float = 0.5) -> None:
    """Refuse a configuration one of whose arrays would take more than ``fraction`` of the
    available memory (:class:`ConfigError`, with the numbers), before anything is allocated."""
    from ._memory import AllocationError, check_allocation

    for what, nbytes in memory_requests(config):
        try:
            check_allocation(nbytes, what, fraction)
        except AllocationError as err:
            raise ConfigError(str(err)) from None


# --- help for each key ------------------------------------------------------------------------

def _source_comments(cls) -> dict[str, str]:
    """Comments after (and continuing below) each field in the class source."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    out, last = {}, None
    for line in lines:
        m = re.match(r"\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$", line.rstrip())
        c = re.match(r"\s+#\s*(.*)$", line.rstrip())
        if m and not line.lstrip().startswith(("def ", "#", '"', "'")):
            last = m.group(1)
            if m.group(2):
                out[last] = m.group(2).strip()
        elif c and last in out:
            out[last] += " " + c.group(1).strip()
        else:
            last = None
    return out


def _docstring_mentions(cls, names: set[str]) -> dict[str, str]:
    """For each key named in a ````…```` span of the class docstring, the clause (or the
    sentence, when the clause says nothing but the key) naming it."""
    doc = inspect.getdoc(cls) or ""
    body = "\n\n".join(doc.split("\n\n")[1:]) or doc
    text = " ".join(body.split())
    sentences = re.split(r"(?<=[.])\s+(?=[A-Z`])", text)
    out: dict[str, str] = {}
    for sentence in sentences:
        head, _, rest = sentence.partition(": ") if re.match(r"^[\w\s.=-]{1,30}: ",
                                                               sentence) else ("", "", sentence)
        clauses, depth, cur = [], 0, ""
        for ch in rest:            # split at commas/semicolons outside parentheses
            depth += (ch in "([") - (ch in ")]")
            if ch in ",;" and depth == 0:
                clauses.append(cur.strip())
                cur = ""
            else:
                cur += ch
        clauses.append(cur.strip())
        for clause in clauses:
            spans = re.findall(r"``(.+?)``", clause)
            keys = [w for span in spans for w in re.findall(r"\w+", span) if w in names]
            bare = re.sub(r"``.+?``|\b(and|or|each|defaults?|the)\b|[\W\d_]", "", clause)
            for key in keys:
                meaning = clause if len(bare) >= 3 else sentence
                if head and meaning is clause:
                    meaning = f"{head}: {clause}"
                out.setdefault(key, meaning.replace("``", "").rstrip(".;, "))
    return out


def _probe_values(tp: Any) -> list[Any]:
    origin = typing.get_origin(tp)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        return [(), *[(v,) for v in _probe_values(item)]]
    if tp is int:
        return [-1, 0, 1, 2 ** 40]
    if tp is float:
        return [-1.0, 0.0, 1e30]
    if tp is str:
        return ["?"]
    return []


def _range_from_validate(cls, name: str, tp: Any) -> str:
    """What the configuration's ``validate()`` says when ``name`` is set out of range."""
    try:
        base = cls()
    except Exception:          # a key without a default: nothing to probe from
        return ""
    if getattr(base, "validate", None) is None:
        return ""
    found: list[str] = []
    for value in _probe_values(tp):
        try:
            dataclasses.replace(base, **{name: value}).validate()
        except Exception as err:      # any complaint describes the range
            msg = re.split(r",? got\b|: got\b", str(err))[0].strip().rstrip(",;:")
            probe = [str(v) for v in (value if isinstance(value, tuple) else (value,))]
            leaked = any(len(p) >= 3 or p == "?" for p in probe) and any(p in msg
                                                                          for p in probe)
            if re.search(rf"\b{re.escape(name)}\b", msg) and not leaked and msg not in found:
                found.append(msg)
    return "; ".join(found)


# Meanings of keys that mean the same in every experiment (used when the configuration class
# says nothing about them itself).
COMMON_KEYS = {
    "lr": "learning rate η", "momentum": "momentum β (heavy ball)",
    "weight_decay": "weight decay λ", "batch_size": "minibatch size S",
    "n_traj": "number of trajectories", "n_steps": "number of steps",
    "sde_n_traj": "number of SDE trajectories", "sde_n_steps": "number of SDE steps",
    "transient_steps": "steps of the transient run (the mean from a displaced start)",
    "sampling": "how a step draws its minibatch", "n_seeds": "number of seeds",
    "width": "hidden units per layer", "depth": "number of layers",
}


def describe_fields(cls) -> list[dict[str, str]]:
    """Meaning, type, default and allowed range of every field of a configuration class.

    The meaning is the first of: ``field(metadata={"help": ...})``, the comment after the
    field in the class source, the clause of the class docstring naming the key, the common
    meaning of a key used by every experiment (``COMMON_KEYS``). The range is
    ``metadata["range"]``, else what the class's ``validate()`` says when the key is set
    out of range (the other keys at their defaults).
    """
    types = _field_types(cls)
    comments, mentions = _source_comments(cls), _docstring_mentions(cls, set(types))
    out = []
    for f in dataclasses.fields(cls):
        meaning = (f.metadata.get("help") if f.metadata else None) or comments.get(f.name) \
            or mentions.get(f.name) or COMMON_KEYS.get(f.name, "")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out.append({"name": f.name, "meaning": meaning, "type": _type_name(types[f.name]),
                    "default": repr(list(default) if isinstance(default, tuple) else default),
                    "range": (f.metadata.get("range") if f.metadata else None)
                    or _range_from_validate(cls, f.name, types[f.name])})
    return out


def help_text(cls, quick: dict[str, Any] | None = None, width: int = 92) -> str:
    """The ``limitdyn run NAME --help`` page section listing every key."""
    lines = []
    for d in describe_fields(cls):
        head = f"{d['name']} ({d['type']}, default {d['default']}"
        if quick and d["name"] in quick:
            value = quick[d["name"]]
            head += f"; --quick {list(value) if isinstance(value, tuple) else value!r}"
        lines.append("  " + head + ")")
        for label in ("meaning", "range"):
            if d[label]:
                text = d[label] if label == "meaning" else f"allowed: {d[label]}"
                lines.append(textwrap.fill(text, width=width, initial_indent="      ",
                                           subsequent_indent="      "))
    return "\n".join(lines)


__all__ = ["ConfigError", "check_files", "check_memory", "clip", "describe_fields",
           "help_text", "load_toml", "memory_requests", "parse_assignments", "replace",
           "shown", "to_dict"]

