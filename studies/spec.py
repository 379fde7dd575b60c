"""Load a study file from ``ablations/`` and check all of it before anything runs.

Every problem is collected, not just the first, and each is one line naming the file, the key
and the fix, so a user fixes a study in one round. Config keys and profiles are checked against
``core`` itself (``field_names``, ``PROFILES`` and ``ConfigError`` messages), so a study can never
name a setting the trainer does not have. Building each expanded run's config is ``plan``'s job.
"""
from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import tomllib

from core.config import field_names, unknown_key_message
from core.profiles import PROFILES
from core.typed import flatten
from studies.resources import KEYS as RESOURCE_KEYS, Resources, update as update_resources

METRICS = {"knn_top1": "maximize", "knn_top5": "maximize", "student_knn_top1": "maximize",
           "student_knn_top5": "maximize", "linear_top1": "maximize", "loss": "minimize"}
RESOURCES_FILE = "_resources.toml"

_TOP_KEYS = ("description", "reference", "profile", "metric", "seeds", "set", "axes", "profiles")
_AXIS_KEYS = ("name", "key", "values", "paper", "profiles")
_PROFILE_KEYS = ("set", "resources")


class SpecError(ValueError):
    """A study (or its command line) is invalid; ``lines`` holds one message per problem."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Value:
    """One point of an axis: a label for tables and the config overrides it stands for."""

    label: str
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class Axis:
    name: str
    key: str | None
    values: tuple[Value, ...]
    paper: tuple[float | None, ...] | None  # aligned with values; None entries: not reported
    per_profile: Mapping[str, tuple[Value, ...]] = field(default_factory=dict)

    def values_for(self, profile: str) -> tuple[Value, ...]:
        """The values runs use on ``profile``: its declared mapping, else the axis's own."""
        return self.per_profile.get(profile, self.values)

    @property
    def keys(self) -> set[str]:
        """Every config key some value of this axis sets, on any profile."""
        found = {self.key} if self.key else set()
        for values in (self.values, *self.per_profile.values()):
            for value in values:
                found.update(value.overrides)
        return found


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    description: str
    reference: str
    profile: str
    metric: str
    seeds: tuple[int, ...]
    overrides: Mapping[str, Any]
    axes: tuple[Axis, ...]
    profile_overrides: Mapping[str, Mapping[str, Any]]
    resources_by_profile: Mapping[str, Resources]

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    def resources(self, profile: str) -> Resources:
        """``_resources.toml``'s entry for the profile with this study's overrides; the field
        defaults of ``Resources`` fill anything neither declares."""
        return self.resources_by_profile.get(profile, Resources())


def study_dir() -> Path:
    return Path(str(resources.files("ablations")))


def available() -> dict[str, Path]:
    """Study name -> file, for every study shipped in ``ablations/``."""
    return {p.stem: p for p in sorted(study_dir().glob("*.toml")) if not p.name.startswith("_")}


def resolve(name_or_path: str) -> Path:
    """A shipped study's name, or a path to a TOML file."""
    shipped = available()
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return path
    close = difflib.get_close_matches(name_or_path, shipped, n=1)
    hint = f"did you mean {close[0]}?" if close else "see python -m studies.run --list"
    raise SpecError([f"{name_or_path}: no such study in {study_dir()} and no such .toml file; {hint}"])


def load(name_or_path: str) -> Study:
    """Read and validate a study; raises ``SpecError`` listing every problem found."""
    path = resolve(name_or_path)
    check = _Checker(path)
    raw = check.read_toml(path)
    defaults = _load_default_resources()
    study = check.study(raw, path, defaults) if raw is not None else None
    if check.errors or study is None:
        raise SpecError(check.errors)
    return study


def describe(path: Path) -> str:
    """The ``description`` line of a study file, for ``--list`` (no validation)."""
    try:
        return str(tomllib.loads(path.read_text()).get("description", ""))
    except (OSError, tomllib.TOMLDecodeError) as error:
        return f"(unreadable: {error})"


def value_label(value: Any) -> str:
    """How a scalar axis value reads in labels: 0.0 -> '0', 0.9 -> '0.9', 'x' -> 'x'."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value).removesuffix(".0")
    return str(value)


def _load_default_resources() -> dict[str, Resources]:
    path = study_dir() / RESOURCES_FILE
    check = _Checker(path)
    found = {profile: check.resources(table, profile, Resources())
             for profile, table in (check.read_toml(path) or {}).items() if check.profile_name(profile, profile)}
    if check.errors:
        raise SpecError(check.errors)
    return found


class _Checker:
    """Collects one-line errors while turning raw TOML into the study's dataclasses."""

    def __init__(self, path: Path):
        self.path = path
        self.errors: list[str] = []
        self.fields = set(field_names())

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{self.path}: {key}: {message}")

    def read_toml(self, path: Path) -> dict[str, Any] | None:
        try:
            return tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            self.errors.append(f"{path}: not valid TOML: {error}; fix the syntax there")
        except OSError as error:
            self.errors.append(f"{path}: cannot be read: {error.strerror}")
        return None

    # -- generic checks ---------------------------------------------------------------------------
    def known_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
                self.error(f"{where}{key}", f"unknown key; {hint}")

    def typed(self, value: Any, types: tuple[type, ...], key: str, fix: str) -> bool:
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            self.error(key, f"has the wrong type ({type(value).__name__}, {value!r}); {fix}")
        return ok

    def table(self, value: Any, key: str) -> bool:
        return self.typed(value, (dict,), key, "write a table: [" + key + "] or { ... }")

    def profile_name(self, name: str, key: str) -> bool:
        if name in PROFILES:
            return True
        self.error(key, f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
        return False

    def overrides(self, raw: Any, key: str) -> dict[str, Any]:
        """A table of config overrides, nested or dotted, each key a real config field."""
        if not self.table(raw, key):
            return {}
        flat = flatten(raw)
        for dotted in flat:
            if dotted == "seed":
                self.error(f"{key}.seed", "seeds are not set per run; use the study's seeds = N")
            elif dotted not in self.fields:
                self.error(f"{key}.{dotted}", unknown_key_message(dotted))
        return flat

    # -- the study --------------------------------------------------------------------------------
    def study(self, raw: dict[str, Any], path: Path, defaults: dict[str, Resources]) -> Study | None:
        self.known_keys(raw, _TOP_KEYS, "")
        description = raw.get("description", "")
        reference = raw.get("reference", "")
        self.typed(description, (str,), "description", "write a one-line string")
        self.typed(reference, (str,), "reference", "write a string saying where the paper numbers come from")
        profile = raw.get("profile", "tiny")
        if self.typed(profile, (str,), "profile", "write a profile name in quotes"):
            self.profile_name(profile, "profile")
        metric = raw.get("metric", "knn_top1")
        if self.typed(metric, (str,), "metric", "write a metric name in quotes") and metric not in METRICS:
            self.error("metric", f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        seeds = self.seeds(raw.get("seeds", 1), "seeds")
        overrides = self.overrides(raw.get("set", {}), "set")
        axes = self.axes(raw.get("axes"))
        profile_overrides, resources_by_profile = self.profiles(raw.get("profiles", {}), defaults)
        self.conflicts(axes, overrides, profile_overrides)
        if self.errors:
            return None
        return Study(name=path.stem, path=path, description=description, reference=reference,
                     profile=profile, metric=metric, seeds=seeds, overrides=overrides, axes=axes,
                     profile_overrides=profile_overrides, resources_by_profile=resources_by_profile)

    def seeds(self, raw: Any, key: str) -> tuple[int, ...]:
        fix = "write a count such as 3 (seeds 0, 1, 2) or a list of distinct seeds such as [0, 7]"
        if isinstance(raw, int) and not isinstance(raw, bool):
            if raw < 1:
                self.error(key, f"{raw} runs no seed; {fix}")
                return ()
            return tuple(range(raw))
        if isinstance(raw, list) and raw and all(isinstance(s, int) and not isinstance(s, bool)
                                                 and s >= 0 for s in raw):
            if len(set(raw)) != len(raw):
                self.error(key, f"duplicate seeds in {raw}; {fix}")
            return tuple(raw)
        self.error(key, f"{raw!r} is not a seed count or list; {fix}")
        return ()

    def axes(self, raw: Any) -> tuple[Axis, ...]:
        fix = "declare at least one [[axes]] table with a name, a key and a non-empty values list"
        if raw is None or raw == []:
            self.error("axes", f"the grid is empty; {fix}")
            return ()
        if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
            self.error("axes", f"must be an array of tables; {fix}")
            return ()
        axes = [a for i, table in enumerate(raw) if (a := self.axis(table, f"axes[{i}]")) is not None]
        names = [a.name for a in axes]
        for name in {n for n in names if names.count(n) > 1}:
            self.error("axes", f"two axes are named {name!r}; give each axis its own name")
        with_paper = [a.name for a in axes if a.paper is not None]
        if len(with_paper) > 1:
            self.error("axes", f"axes {', '.join(with_paper)} all carry paper numbers; keep them on one axis")
        return tuple(axes)

    def axis(self, raw: dict[str, Any], where: str) -> Axis | None:
        errors_before = len(self.errors)
        self.known_keys(raw, _AXIS_KEYS, f"{where}.")
        name, key = raw.get("name"), raw.get("key")
        if name is None:
            self.error(f"{where}.name", "missing; give the axis a short name such as \"m\"")
        elif self.typed(name, (str,), f"{where}.name", "write a short name in quotes") \
                and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
            self.error(f"{where}.name", f"{name!r} is not a short name; use letters, digits, _ . -")
        if key is not None and self.typed(key, (str,), f"{where}.key", "write a dotted config key in quotes"):
            if key not in self.fields:
                self.error(f"{where}.key", unknown_key_message(key))
            elif key == "seed":
                self.error(f"{where}.key", "seed is not an axis; use the study's seeds = N")
        raw_values = raw.get("values")
        if not isinstance(raw_values, list) or not raw_values:
            self.error(f"{where}.values", "missing or empty; list the values this axis takes")
            return None
        values = self.values(raw_values, key, f"{where}.values", labelled=True)
        paper = self.paper(raw.get("paper"), len(raw_values), f"{where}.paper")
        per_profile: dict[str, tuple[Value, ...]] = {}
        mappings = raw.get("profiles", {})
        if self.table(mappings, f"{where}.profiles"):
            for profile, mapping in mappings.items():
                at = f"{where}.profiles.{profile}"
                if not self.profile_name(profile, at) or not self.table(mapping, at):
                    continue
                self.known_keys(mapping, ("values",), f"{at}.")
                mapped = mapping.get("values")
                if not isinstance(mapped, list) or len(mapped) != len(raw_values):
                    self.error(f"{at}.values", f"must list {len(raw_values)} values, one for each of "
                                               f"{where}.values, in the same order")
                    continue
                per_profile[profile] = tuple(
                    Value(label.label, v.overrides) for label, v in
                    zip(values, self.values(mapped, key, f"{at}.values", labelled=False)))
        if len(self.errors) > errors_before or not isinstance(name, str):
            return None
        return Axis(name, key, values, paper, per_profile)

    def values(self, raw: list[Any], key: str | None, where: str, labelled: bool) -> tuple[Value, ...]:
        values = []
        for i, item in enumerate(raw):
            at = f"{where}[{i}]"
            if isinstance(item, dict):
                allowed = ("label", "set") if labelled else ("set",)
                self.known_keys(item, allowed, f"{at}.")
                label = item.get("label", "")
                if labelled and not (isinstance(label, str) and label):
                    self.error(f"{at}.label", "missing; a table value needs a label such as \"both\"")
                if "set" not in item:
                    self.error(f"{at}.set", "missing; write set = { \"dotted.key\" = value } (or {} for the baseline)")
                values.append(Value(str(label), self.overrides(item.get("set", {}), f"{at}.set")))
            elif isinstance(item, (int, float, str, bool)):
                if key is None:
                    self.error(f"{at}", f"scalar value {item!r} but the axis has no key; add key = \"dotted.key\"")
                if isinstance(item, float) and not math.isfinite(item):
                    self.error(f"{at}", f"{item!r} is not a finite number")
                values.append(Value(value_label(item), {key: item} if key else {}))
            else:
                self.error(at, f"{item!r} is neither a scalar nor a table; write 0.9 or {{ label = ..., set = {{...}} }}")
        # Duplicates: the same label (the declared values) or the same overrides (a mapping).
        seen: dict[str, int] = {}
        for i, value in enumerate(values):
            canonical = value.label if labelled else json.dumps(dict(value.overrides), sort_keys=True)
            if canonical in seen:
                self.error(f"{where}[{i}]", f"duplicates {where}[{seen[canonical]}] ({canonical}); "
                                            "remove one of them")
            seen.setdefault(canonical, i)
        if labelled:  # distinct labels for one configuration
            by_overrides: dict[str, int] = {}
            for i, value in enumerate(values):
                canonical = json.dumps(dict(value.overrides), sort_keys=True)
                first = by_overrides.setdefault(canonical, i)
                if first != i and values[first].label != value.label:
                    self.error(f"{where}[{i}]", f"sets the same config as {where}[{first}]; remove one of them")
        return tuple(values)

    def paper(self, raw: Any, count: int, where: str) -> tuple[float | None, ...] | None:
        if raw is None:
            return None
        numbers = isinstance(raw, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                for x in raw)
        if not numbers:
            self.error(where, "must be a list of numbers (nan where the paper reports none)")
            return None
        if len(raw) != count:
            self.error(where, f"has {len(raw)} numbers for {count} values; give exactly one per value, "
                              "in the same order (nan where the paper reports none)")
            return None
        return tuple(None if math.isnan(x) else float(x) for x in raw)

    def profiles(self, raw: Any, defaults: dict[str, Resources]
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, Resources]]:
        overrides: dict[str, dict[str, Any]] = {}
        resources_by_profile = dict(defaults)
        if not self.table(raw, "profiles"):
            return overrides, resources_by_profile
        for profile, table in raw.items():
            at = f"profiles.{profile}"
            if not self.profile_name(profile, at) or not self.table(table, at):
                continue
            self.known_keys(table, _PROFILE_KEYS, f"{at}.")
            overrides[profile] = self.overrides(table.get("set", {}), f"{at}.set")
            if "resources" in table:
                base = defaults.get(profile, Resources())
                resources_by_profile[profile] = self.resources(table["resources"], f"{at}.resources", base)
        return overrides, resources_by_profile

    def resources(self, raw: Any, where: str, base: Resources) -> Resources:
        if not self.table(raw, where):
            return base
        self.known_keys(raw, RESOURCE_KEYS, f"{where}.")
        merged, problems = update_resources(base, {k: v for k, v in raw.items() if k in RESOURCE_KEYS})
        for key, message in problems:
            self.error(f"{where}.{key}", message)
        return merged

    def conflicts(self, axes: tuple[Axis, ...], overrides: dict[str, Any],
                  profile_overrides: dict[str, dict[str, Any]]) -> None:
        owner: dict[str, str] = {}
        for axis in axes:
            for key in sorted(axis.keys):
                if key in owner:
                    self.error(f"axes ({axis.name})", f"sets {key}, which axis {owner[key]} sets too; "
                                                      "merge them into one axis")
                owner.setdefault(key, axis.name)
        for where, table in [("set", overrides)] + [(f"profiles.{p}.set", t) for p, t in profile_overrides.items()]:
            for key in table:
                if key in owner:
                    self.error(f"{where}.{key}", f"is swept by axis {owner[key]}; remove it here")
