"""A study's axes: the values each takes (on every profile, or mapped per profile), the paper's
numbers beside them, and their checks.

The checks are a part of ``spec``'s checker (``AxisChecks`` is one of its bases, and uses its
``error``, ``typed``, ``table``, ``known_keys``, ``overrides`` and ``profile_name``), kept here
because an axis is most of what a study file declares and the study's other keys are the rest.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from core.config import unknown_key_message

_AXIS_KEYS = ("name", "key", "values", "paper", "profiles")


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
