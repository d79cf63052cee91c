"""Typed experiment configurations: frozen dataclasses, loadable from TOML, overridable.

An experiment's configuration is a frozen dataclass whose fields have simple types
(``int``, ``float``, ``bool``, ``str``, or a tuple of those). A TOML file sets fields by
name (a flat table, or the table named after the experiment); ``--set key=value`` on the
command line sets one field, parsed according to its declared type (tuples as
comma-separated lists). Unknown keys, wrong types and invalid values raise
:class:`ConfigError` with a one-line message naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration key, type or value is not acceptable."""


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a comma-separated list of {typing.get_args(tp)[0].__name__}"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, tp: Any, value: Any, *, from_text: bool) -> Any:
    """``value`` as type ``tp`` (from a TOML value, or from text after ``--set key=``)."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if from_text:
            parts = [p.strip() for p in str(value).split(",") if p.strip()]
        elif isinstance(value, list):
            parts = value
        else:
            raise ConfigError(f"{key} must be {_describe(tp)}, got {value!r}")
        return tuple(_coerce(key, item, p, from_text=from_text) for p in parts)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if from_text and str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        try:
            out = int(value) if from_text else value
        except ValueError:
            raise ConfigError(f"{key} must be an integer, got {value!r}") from None
        if not isinstance(out, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return out
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
        if out != out or out in (float("inf"), float("-inf")):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {tp!r}")  # pragma: no cover


def replace(config: Any, values: dict[str, Any], *, from_text: bool = False) -> Any:
    """A copy of ``config`` with ``values`` set (keys checked, values coerced and validated)."""
    types = _field_types(type(config))
    updates = {}
    for key, value in values.items():
        if key not in types:
            raise ConfigError(f"unknown configuration key {key!r}; allowed: "
                              f"{', '.join(types)}")
        updates[key] = _coerce(key, types[key], value, from_text=from_text)
    new = dataclasses.replace(config, **updates)
    check = getattr(new, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigError:
            raise
        except (TypeError, ValueError) as err:
            raise ConfigError(str(err)) from None
    return new


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["key=value", ...]`` → dict; a malformed item raises :class:`ConfigError`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def load_toml(path: str, section: str | None = None) -> dict[str, Any]:
    """The flat key/value table of a TOML file (or its ``[section]`` if present)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"malformed TOML in {path}: {err}") from None
    if section is not None and isinstance(data.get(section), dict):
        data = data[section]
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise ConfigError(f"{path}: unexpected table(s) {', '.join(nested)}; put the keys at "
                          f"the top level or under [{section}]")
    return data


def to_dict(config: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()}
