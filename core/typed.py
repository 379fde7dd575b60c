"""Frozen dataclasses built from plain mappings, with errors a person can act on.

Configs and study resources are plain data (numbers, strings, booleans, pairs) read from TOML
files and ``--set key=value`` options, so the same few rules apply to all of them: unknown keys
are refused with the nearest valid ones, values are checked against the field's annotation
(ints are accepted where floats are expected, never booleans; numbers must be finite), and a
nested dataclass is addressed with dotted keys (``optim.lr``). Every error is a ``ConfigError``
whose one-line message names the key and the fix.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping  # not typing's aliases: isinstance() of those is slower
from typing import Any, Literal, Tuple


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and how to fix it."""


def build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """An instance of dataclass ``cls`` from a nested mapping (unknown keys and wrong types refused)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a table of keys, got {values!r}")
    types_of = hints(cls)
    unknown = sorted(set(values).difference(_names(cls)))
    if unknown:
        raise ConfigError(unknown_key_message(prefix + unknown[0], field_names(cls, prefix)))
    sections = _sections(cls)
    kwargs = {}
    for name, value in values.items():
        hint = types_of[name]
        if name in sections:
            kwargs[name] = build(hint, value, prefix + name + ".")
        else:
            kwargs[name] = coerce(value, hint, prefix + name)
    return cls(**kwargs)


def plain(obj: Any) -> dict[str, Any]:
    """A dataclass that ``build`` made, as the nested dicts it was built from (sequences as
    lists): what a JSON round trip of ``dataclasses.asdict`` gives, in a seventh of the time,
    which a 10,000-run study spends on every run."""
    sections, values = _sections(type(obj)), {}
    for name in _names(type(obj)):
        value = getattr(obj, name)
        if name in sections:
            values[name] = plain(value)
        else:
            values[name] = _listed(value) if isinstance(value, (tuple, list)) else value
    return values


def dotted(obj: Any, prefix: str = "") -> dict[str, Any]:
    """A dataclass that ``build`` made as ``{"a.b": value}``: ``flatten(plain(obj))`` in one pass."""
    sections, flat = _sections(type(obj)), {}
    for name in _names(type(obj)):
        value = getattr(obj, name)
        if name in sections:
            flat.update(dotted(value, prefix + name + "."))
        else:
            flat[prefix + name] = _listed(value) if isinstance(value, (tuple, list)) else value
    return flat


def _listed(values: tuple | list) -> list:
    return [_listed(v) if isinstance(v, (tuple, list)) else v for v in values]


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a field's annotation; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of "
                              + ", ".join(repr(a) for a in typing.get_args(hint)))
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else coerce(value, args[0], key)
    if origin in (tuple, Tuple):
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}={value!r} must be a list of {len(args)} numbers")
        return tuple(coerce(v, a, key) for v, a in zip(value, args))
    if hint in (float, int) and _names_non_finite(value):
        raise ConfigError(f"{key}={value!r} is not finite; give a finite number")
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r} has the wrong type: expected {hint.__name__}, "
                          f"got {type(value).__name__}")
    return value


def finite_number(value: Any, key: str) -> float:
    """``value`` as a float, refused unless it is a finite int or float (not a boolean)."""
    if _names_non_finite(value):
        raise ConfigError(f"{key}={value!r} is not finite; give a finite number")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r} must be a number")
    return float(value)


def _names_non_finite(value: Any) -> bool:
    """NaN and infinities, as numbers or as the words a user types (``nan``, ``inf``, ``-Infinity``)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        try:
            return not math.isfinite(float(value))
        except ValueError:
            return False
    return False


def set_dotted(values: dict[str, Any], dotted: str, value: Any, names: Iterable[str]) -> None:
    """Set ``values["a"]["b"] = value`` for ``dotted = "a.b"``; a key not in ``names`` is refused."""
    parts = dotted.split(".")
    node = values
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ConfigError(unknown_key_message(dotted, names))
        node = node[part]
    if parts[-1] not in node or isinstance(node[parts[-1]], dict):
        raise ConfigError(unknown_key_message(dotted, names))
    node[parts[-1]] = list(value) if isinstance(value, tuple) else value


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b": value}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix + key + "."))
        else:
            flat[prefix + key] = value
    return flat


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of ``flatten``: ``{"loss.teacher_temp": 0.04}`` -> ``{"loss": {"teacher_temp": 0.04}}``."""
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        *sections, key = dotted.split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return nested


def field_names(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key dataclass ``cls`` accepts, nested sections included."""
    return list(_field_names(cls, prefix))


def field_type(cls: type, key: str) -> Any:
    """The declared type of a dotted key of dataclass ``cls``: ``epochs`` -> int."""
    *sections, name = key.split(".")
    for section in sections:
        cls = hints(cls)[section]
    return hints(cls)[name]


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    """The resolved field types of ``cls``: resolving them is most of the time a config takes to
    build, and a 10,000-run study builds 10,000 configs."""
    return typing.get_type_hints(cls)


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _sections(cls: type) -> frozenset[str]:
    """The fields of ``cls`` that are dataclasses themselves (nested sections)."""
    return frozenset(name for name, hint in hints(cls).items() if dataclasses.is_dataclass(hint))


@functools.cache
def _field_names(cls: type, prefix: str) -> tuple[str, ...]:
    names: list[str] = []
    types_of = hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(types_of[f.name]):
            names.extend(_field_names(types_of[f.name], prefix + f.name + "."))
        else:
            names.append(prefix + f.name)
    return tuple(sorted(names))


def unknown_key_message(key: str, names: Iterable[str]) -> str:
    """'unknown config key ...; did you mean ...?' with at most a few of the nearest valid keys.

    A bare last part (``lr``) is matched against the last parts of dotted keys (``optim.lr``), so
    the section a user forgot is found; with no close match the nearest few are named anyway,
    never the whole list."""
    names = sorted(names)
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [n for n in names if n.rsplit(".", 1)[-1] == leaf and n != key]
    close = same_leaf or difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    if close:
        return f"unknown config key {key!r}; did you mean {' or '.join(close[:3])}?"
    nearest = difflib.get_close_matches(key, names, n=4, cutoff=0.0)
    return f"unknown config key {key!r}; the nearest valid keys are {', '.join(nearest)}"


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"key=value"`` of a ``--set`` option -> ``(key, value)``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r} needs the form key=value, e.g. --set epochs=20")
    return key.strip(), parse_value(value)


def parse_value(text: str) -> Any:
    """Read a ``--set key=value`` value: JSON where it parses (numbers, booleans, lists), else text."""
    lowered = text.strip()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        return lowered
