"""Load a study file from ``ablations/`` and check all of it before anything runs.

Every problem is collected, not just the first, and each is one line naming the file, the key
and the fix, so a user fixes a study in one round. Config keys and profiles are checked against
``core`` itself (``field_names``, ``core.profiles`` and ``ConfigError`` messages), so a study can
never name a setting the trainer does not have. A profile file a study names is read relative to
the study's folder and kept as an absolute path, so every later command finds it. Building each
expanded run's config is ``plan``'s job.

A boundary study declares ``[boundary]`` instead of ``[[axes]]`` (``studies.boundary`` searches
it); its study has one axis, the values probed so far, and as loaded, the two ends it probes first.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import tomllib

from core import profiles
from core.config import ConfigError, field_names, unknown_key_message
from core.typed import flatten
from studies.axes import Axis, AxisChecks, Boundary, Value, value_label  # noqa: F401 (Value, value_label re-exported)
from studies.resources import KEYS as RESOURCE_KEYS, Resources, update as update_resources

METRICS = {"knn_top1": "maximize", "knn_top5": "maximize", "student_knn_top1": "maximize",
           "student_knn_top5": "maximize", "linear_top1": "maximize", "loss": "minimize"}

_TOP_KEYS = ("description", "reference", "profile", "metric", "seeds", "set", "axes", "boundary", "profiles")
_PROFILE_KEYS = ("set", "resources")


class SpecError(ValueError):
    """A study (or its command line) is invalid; ``lines`` holds one message per problem."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


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
    boundary: Boundary | None = None  # a boundary study's search; its one axis holds the probes

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    @property
    def labels_for(self) -> str:
        """What needs labelled data in this study (for ``core.preflight.check``): its metric,
        unless that is the loss."""
        return "" if self.metric == "loss" else f"the study's metric {self.metric}"

    def resources(self, profile: str) -> Resources:
        """The profile file's ``[resources]`` with this study's overrides; the field defaults of
        ``Resources`` fill anything neither declares. Raises ``SpecError`` for a bad profile."""
        return self.resources_by_profile.get(profile) or profile_resources(profile)


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
    study = check.study(raw, path) if raw is not None else None
    if check.errors or study is None:
        raise SpecError(check.errors)
    return study


def describe(path: Path) -> str:
    """The ``description`` line of a study file, for ``--list`` (no validation)."""
    try:
        return str(tomllib.loads(path.read_text()).get("description", ""))
    except (OSError, tomllib.TOMLDecodeError) as error:
        return f"(unreadable: {error})"


def profile_resources(profile: str) -> Resources:
    """The ``[resources]`` of a profile's file, checked; ``SpecError`` naming the file if bad."""
    try:
        found = profiles.load(profile)
    except ConfigError as error:
        raise SpecError([str(error)]) from None
    check = _Checker(found.path)
    merged = check.resources(found.resources, "resources", Resources())
    if check.errors:
        raise SpecError(check.errors)
    return merged


class _Checker(AxisChecks):
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

    def profile_name(self, name: str, key: str) -> str | None:
        """A profile a study names, as ``core.profiles.resolve`` gives it (a file relative to
        the study's folder); None, with the problem recorded, if there is no such profile."""
        try:
            return profiles.resolve(name, self.path.parent)
        except ConfigError as error:
            self.error(key, str(error))
            return None

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
    def study(self, raw: dict[str, Any], path: Path) -> Study | None:
        self.known_keys(raw, _TOP_KEYS, "")
        description = raw.get("description", "")
        reference = raw.get("reference", "")
        self.typed(description, (str,), "description", "write a one-line string")
        self.typed(reference, (str,), "reference", "write a string saying where the paper numbers come from")
        profile = raw.get("profile", "tiny")
        if self.typed(profile, (str,), "profile", "write a profile name or file in quotes"):
            profile = self.profile_name(profile, "profile")
        metric = raw.get("metric", "knn_top1")
        if self.typed(metric, (str,), "metric", "write a metric name in quotes") and metric not in METRICS:
            self.error("metric", f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        seeds = self.seeds(raw.get("seeds", 1), "seeds")
        overrides = self.overrides(raw.get("set", {}), "set")
        axes, boundary = self.grid(raw, seeds)
        profile_overrides, resources_by_profile = self.profiles(raw.get("profiles", {}))
        self.conflicts(axes, overrides, profile_overrides)
        if self.errors:
            return None
        return Study(name=path.stem, path=path, description=description, reference=reference,
                     profile=profile, metric=metric, seeds=seeds, overrides=overrides, axes=axes,
                     profile_overrides=profile_overrides, resources_by_profile=resources_by_profile,
                     boundary=boundary)

    def grid(self, raw: dict[str, Any], seeds: tuple[int, ...]) -> tuple[tuple[Axis, ...], Boundary | None]:
        """The study's axes, and its boundary if it searches one: then its one axis holds the two
        ends, the probes it starts with."""
        if "boundary" not in raw:
            return self.axes(raw.get("axes")), None
        boundary = self.boundary(raw["boundary"])
        if "axes" in raw:
            self.error("axes", "a boundary study searches its [boundary] setting alone; drop the [[axes]] tables "
                               "(or sweep them in a grid study of their own)")
        if seeds and len(seeds) % 2 == 0:
            self.error("seeds", f"{len(seeds)} seeds can tie on a probe's verdict, which then decides nothing; a "
                                "boundary study takes the majority of an odd number of seeds, such as 1 or 3")
        return ((boundary.axis((boundary.low, boundary.high)),) if boundary else ()), boundary

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

    def profiles(self, raw: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Resources]]:
        overrides: dict[str, dict[str, Any]] = {}
        resources_by_profile: dict[str, Resources] = {}
        if not self.table(raw, "profiles"):
            return overrides, resources_by_profile
        for name, table in raw.items():
            at = f"profiles.{name}"
            profile = self.profile_name(name, at)
            if profile is None or not self.table(table, at):
                continue
            self.known_keys(table, _PROFILE_KEYS, f"{at}.")
            overrides[profile] = self.overrides(table.get("set", {}), f"{at}.set")
            if "resources" in table:
                try:
                    base = profile_resources(profile)
                except SpecError as error:
                    self.errors.extend(error.lines)
                    continue
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
