"""Named scales a run or a study is built from, as TOML files: new scales need no Python.

The shipped ones are in ``ablations/profiles/``: ``tiny`` trains on Fashion-MNIST in minutes on
two CPU cores and is the embedded default of every command; ``vits16_imagenet`` is the paper's
recipe (ViT-S/16, 2x224 + 8x96 crops, batch 1024, 100 epochs, mixed precision) for a GPU
cluster; ``micro`` is the smallest real run, which the tests start from. Any other file is used
by its path (``--profile path/to/scale.toml``, ``profile = "scale.toml"`` in a study).

A profile is a set of overrides on the defaults of ``DINOConfig`` (which are the paper's), so what
it changes is visible at a glance. ``extends = "tiny"`` (a shipped name, or a path relative to
the file) starts from another profile, so a variant names only what differs. ``[resources]`` is
what one run asks a scheduler for; only ``studies`` schedules, so it checks that table, and
``core`` passes it through. Everything else is checked when the file is read, as a study is:
every unknown key named in one line with the nearest valid ones, then the values as any config's.
"""
from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from core.config import ConfigError, DINOConfig, field_names, unknown_key_message
from core.typed import flatten, nest

PROFILE_DIR = Path(str(resources.files("ablations"))) / "profiles"
PROFILES: dict[str, Path] = {path.stem: path for path in sorted(PROFILE_DIR.glob("*.toml"))}
_OWN_KEYS = ("extends", "resources")  # a profile's keys that are not config keys


@dataclass(frozen=True)
class Profile:
    name: str  # a shipped profile's name, or the absolute path of the file
    path: Path
    values: Mapping[str, Any]  # dotted config key -> value, over those of the profile it extends
    own: Mapping[str, Any]  # the values the file itself sets: what it changes from the one it extends
    resources: Mapping[str, Any]  # the [resources] table, over that of the profile it extends
    config: DINOConfig  # ``values`` over DINOConfig's defaults


def resolve(name_or_path: str, relative_to: Path | None = None) -> str:
    """A shipped profile's name as it is; a ``.toml`` file's path (relative to ``relative_to``,
    else to the working directory) as an absolute path, which reads the same from anywhere."""
    if name_or_path in PROFILES:
        return name_or_path
    shipped = ", ".join(PROFILES)
    if not name_or_path.endswith(".toml"):
        raise ConfigError(f"unknown profile {name_or_path!r}; choose one of {shipped}, "
                          "or give the path of a profile file (path/to/scale.toml)")
    path = Path(name_or_path).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if not path.is_file():
        raise ConfigError(f"profile file {path} not found; give an existing .toml file or one of {shipped}")
    return str(path.resolve())


def label(profile: str) -> str:
    """A short name for folder names and tables: the shipped name, or the file's stem."""
    return profile if profile in PROFILES else Path(profile).stem


def load(name_or_path: str, relative_to: Path | None = None) -> Profile:
    """The profile, checked; raises ``ConfigError`` with one line starting with its file."""
    return _load(resolve(name_or_path, relative_to), ())


def profile_config(name: str, overrides: Mapping[str, Any] | None = None) -> DINOConfig:
    """The config of profile ``name`` (shipped, or a file's path) with dotted-key ``overrides``."""
    return load(name).config.replace(dict(overrides or {}))


def _load(name: str, chain: tuple[Path, ...]) -> Profile:
    path = PROFILES.get(name) or Path(name)
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{chain[-1]}: extends: profiles extend each other in a circle ({cycle}); break it")
    raw = _read(path)
    extends = raw.pop("extends", None)
    own_resources = raw.pop("resources", {})
    if not isinstance(own_resources, dict):
        raise ConfigError(f"{path}: resources: has the wrong type ({type(own_resources).__name__}); "
                          "write a [resources] table")
    problems = [unknown_key_message(key) for key in flatten(raw) if key not in _config_keys()]
    if problems:
        raise ConfigError(f"{path}: " + " | ".join(problems) + f" (a profile's own keys: {', '.join(_OWN_KEYS)})")
    values: dict[str, Any] = {}
    inherited: dict[str, Any] = {}
    if extends is not None:
        if not isinstance(extends, str):
            raise ConfigError(f"{path}: extends: write the profile to start from in quotes, e.g. extends = \"tiny\"")
        try:
            target = resolve(extends, path.parent)
        except ConfigError as error:
            raise ConfigError(f"{path}: extends: {error}") from None
        base = _load(target, (*chain, path))
        values, inherited = dict(base.values), dict(base.resources)
    own = flatten(raw)
    values.update(own)
    return Profile(name, path, values, own, {**inherited, **own_resources}, _config(values, path))


@functools.cache
def _config_keys() -> frozenset[str]:
    return frozenset(field_names())


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}; fix the syntax there") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror}") from None


def _config(values: Mapping[str, Any], path: Path) -> DINOConfig:
    try:
        return DINOConfig.from_dict(nest(values))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
