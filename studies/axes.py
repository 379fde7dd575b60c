"""A study's axes: the values each takes (on every profile, or mapped per profile), the paper's
numbers beside them, the continuous axis a boundary study searches (``Boundary``), and their
checks.

The checks are a part of ``spec``'s checker (``AxisChecks`` is one of its bases, and uses its
``error``, ``typed``, ``table``, ``known_keys``, ``overrides`` and ``profile_name``), kept here
because an axis is most of what a study file declares and the study's other keys are the rest.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from core import typed
from core.config import DINOConfig, unknown_key_message

_AXIS_KEYS = ("name", "key", "values", "paper", "profiles")
_BOUNDARY_KEYS = ("name", "key", "low", "high", "scale", "tolerance", "budget")

# Each scale as an increasing map of a value to its position, and back. The search cuts the
# bracket into equal parts of position, and the tolerance is a width in position: the value's
# own units (linear), decades (log), decades of 1 - value (log(1-x), for momenta near 1, where
# 0.99, 0.999 and 0.9999 are equally far apart).
SCALES: dict[str, tuple[Callable[[float], float], Callable[[float], float]]] = {
    "linear": (lambda x: x, lambda u: u),
    "log": (math.log10, lambda u: 10.0 ** u),
    "log(1-x)": (lambda x: -math.log10(1.0 - x), lambda u: 1.0 - 10.0 ** -u),
}
UNITS = {"linear": "", "log": "decades", "log(1-x)": "decades of 1 - x"}  # of a width on the scale


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
class Boundary:
    """A study's ``[boundary]``: the real-valued setting ``key`` searched in [low, high] for where
    runs turn from healthy to collapsed (``studies.boundary``), until the bracket is at most
    ``tolerance`` wide on the scale or ``budget`` probes (values, the two ends included) are spent."""

    name: str
    key: str
    low: float
    high: float
    scale: str
    tolerance: float
    budget: int

    def position(self, value: float) -> float:
        return SCALES[self.scale][0](value)

    def value(self, position: float) -> float:
        return SCALES[self.scale][1](position)

    def width(self, a: float, b: float) -> float:
        """How far apart two values are on the scale, in the tolerance's units."""
        return abs(self.position(b) - self.position(a))

    def midpoint(self, a: float, b: float) -> float:
        return self.value((self.position(a) + self.position(b)) / 2)

    def units(self, width: float) -> str:
        """"0.03" (linear), "0.1 decades" (log): a width on the scale as the reader takes it."""
        return f"{width:.3g} {UNITS[self.scale]}".rstrip()

    def axis(self, values: Iterable[float]) -> Axis:
        """The ordinary axis of these probe values, in increasing order."""
        return Axis(self.name, self.key, tuple(Value(value_label(v), {self.key: v}) for v in sorted(set(values))),
                    None)


def value_label(value: Any) -> str:
    """How a scalar axis value reads in labels: 0.0 -> '0', 0.9 -> '0.9', 'x' -> 'x'."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value).removesuffix(".0")
    return str(value)


class AxisChecks:
    """The checks of ``[[axes]]``, for ``spec``'s checker, which supplies the generic ones."""

    def axes(self, raw: Any) -> tuple[Axis, ...]:
        fix = ("declare at least one [[axes]] table with a name, a key and a non-empty values list, or a "
               "[boundary] table to search")
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
        self.short_name(name, f"{where}.name")
        if key is not None:
            self.axis_key(key, f"{where}.key")
        raw_values = raw.get("values")
        if not isinstance(raw_values, list) or not raw_values:
            self.error(f"{where}.values", "missing or empty; list the values this axis takes")
            return None
        values = self.values(raw_values, key, f"{where}.values", labelled=True)
        paper = self.paper(raw.get("paper"), len(raw_values), f"{where}.paper")
        per_profile: dict[str, tuple[Value, ...]] = {}
        mappings = raw.get("profiles", {})
        if self.table(mappings, f"{where}.profiles"):
            for given, mapping in mappings.items():
                at = f"{where}.profiles.{given}"
                profile = self.profile_name(given, at)
                if profile is None or not self.table(mapping, at):
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

    def short_name(self, name: Any, where: str) -> None:
        if name is None:
            self.error(where, "missing; give the axis a short name such as \"m\"")
        elif self.typed(name, (str,), where, "write a short name in quotes") \
                and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
            self.error(where, f"{name!r} is not a short name; use letters, digits, _ . -")

    def axis_key(self, key: Any, where: str) -> bool:
        """Whether ``key`` is a config key an axis may sweep; records the problem if not."""
        if not self.typed(key, (str,), where, "write a dotted config key in quotes"):
            return False
        if key not in self.fields:
            self.error(where, unknown_key_message(key))
        elif key == "seed":
            self.error(where, "seed is not an axis; use the study's seeds = N")
        return key in self.fields and key != "seed"

    # -- [boundary] -------------------------------------------------------------------------------
    def boundary(self, raw: Any) -> Boundary | None:
        if not self.table(raw, "boundary"):
            return None
        errors_before = len(self.errors)
        self.known_keys(raw, _BOUNDARY_KEYS, "boundary.")
        name, key = raw.get("name"), raw.get("key")
        self.short_name(name, "boundary.name")
        if key is None:
            self.error("boundary.key", "missing; name the setting to search, such as \"loss.teacher_temp\"")
        elif self.axis_key(key, "boundary.key") and (kind := typed.field_type(DINOConfig, key)) not in (float, Any):
            self.error("boundary.key", f"{key} is a setting of type {getattr(kind, '__name__', kind)}, not a real "
                                       "number; a boundary searches a real-valued setting (sweep this one as "
                                       "[[axes]] values)")
        low, high, scale = self.scaled_range(raw)
        tolerance = self.number(raw.get("tolerance"), "boundary.tolerance", "the widest bracket that answers, in "
                                + (UNITS.get(scale) or "the value's own units"))
        if tolerance is not None and tolerance <= 0:
            self.error("boundary.tolerance", f"{tolerance:g} is not a width; give a positive one")
        budget = raw.get("budget")
        fix = "give the most probes to run, at least 3 (the two ends and one between them)"
        if budget is None:
            self.error("boundary.budget", f"missing; {fix}")
        elif self.typed(budget, (int,), "boundary.budget", fix) and budget < 3:
            self.error("boundary.budget", f"{budget} probes leave none between the ends; {fix}")
        if len(self.errors) > errors_before:
            return None
        found = Boundary(name, key, low, high, scale, tolerance, budget)
        if tolerance >= found.width(low, high):
            self.error("boundary.tolerance", f"{tolerance:g} is not narrower than [low, high] itself "
                                             f"({found.units(found.width(low, high))}); give a smaller one")
            return None
        return found

    def scaled_range(self, raw: Mapping[str, Any]) -> tuple[float | None, float | None, str | None]:
        """``low``, ``high`` and ``scale``, each None where it is not valid (the problem recorded)."""
        low = self.number(raw.get("low"), "boundary.low", "the lowest value to probe")
        high = self.number(raw.get("high"), "boundary.high", "the highest value to probe")
        if low is not None and high is not None and not low < high:
            self.error("boundary.high", f"{high:g} is not above boundary.low = {low:g}; give low < high")
        scale = raw.get("scale", "linear")
        if self.typed(scale, (str,), "boundary.scale", "write a scale name in quotes") and scale not in SCALES:
            self.error("boundary.scale", f"unknown scale {scale!r}; choose one of {', '.join(map(repr, SCALES))}")
        if not (isinstance(scale, str) and scale in SCALES):
            return low, high, None
        if scale == "log" and low is not None and low <= 0:
            self.error("boundary.low", f"{low:g} has no logarithm; scale = \"log\" needs low > 0")
        if scale == "log(1-x)" and high is not None and high >= 1:
            self.error("boundary.high", f"{high:g} leaves no 1 - value to take the log of; scale = \"log(1-x)\" "
                                        "needs high < 1")
        return low, high, scale

    def number(self, raw: Any, where: str, what: str) -> float | None:
        """A finite number as a float; None, with the problem recorded, if ``raw`` is not one."""
        if raw is None:
            self.error(where, f"missing; give {what}")
        elif self.typed(raw, (int, float), where, f"give {what} as a number"):
            if math.isfinite(raw):
                return float(raw)
            self.error(where, f"{raw!r} is not finite; give {what}")
        return None

