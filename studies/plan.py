"""Expand a study into runs: the full grid of its axes times its seeds, on one profile.

Each run is a complete, validated trainer config plus a stable key, the hash of the canonical
config, so the ledger recognises the same point in a later invocation whatever its label. The
order in which overrides apply is fixed and conflicts are errors rather than silent wins:
profile < study ``set`` < study ``profiles.<p>.set`` < ``--data``/``--set`` < axis values < seed.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from core.config import ConfigError, DINOConfig, field_names, unknown_key_message
from core.profiles import PROFILES, profile_config
from studies.spec import SpecError, Study


@dataclass(frozen=True)
class Run:
    key: str  # hash of the canonical config: the run's identity in the ledger
    label: str  # "m=0.9 seed=0"
    axes: Mapping[str, str]  # axis name -> value label
    seed: int
    paper: float | None  # the paper's number for this point, if any axis carries them
    config: DINOConfig

    @property
    def name(self) -> str:
        """The run folder's name: readable label plus the key's start (unique, filesystem-safe)."""
        slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", self.label.replace(" ", "_"))
        return f"{slug}_{self.key[:8]}"


def config_key(config: DINOConfig) -> str:
    canonical = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def expand(study: Study, profile: str, cli_overrides: Mapping[str, Any] | None = None,
           seeds: tuple[int, ...] | None = None) -> list[Run]:
    """Every run of ``study`` on ``profile``; raises ``SpecError`` naming each bad run or key."""
    where = str(study.path)
    if profile not in PROFILES:
        raise SpecError([f"--profile: unknown profile {profile!r}; choose one of {', '.join(PROFILES)}"])
    cli_overrides = dict(cli_overrides or {})
    errors = _cli_errors(study, cli_overrides)
    if errors:
        raise SpecError(errors)
    base = {**study.overrides, **study.profile_overrides.get(profile, {}), **cli_overrides}
    paper_axis = next((i for i, a in enumerate(study.axes) if a.paper is not None), None)
    runs: list[Run] = []
    seen: dict[str, str] = {}
    failures: dict[str, list[str]] = {}  # ConfigError message -> the points it refuses
    points = list(itertools.product(*(enumerate(axis.values_for(profile)) for axis in study.axes)))
    for point in points:  # one (index, value) per axis
        labels = {axis.name: value.label for axis, (_, value) in zip(study.axes, point)}
        overrides = dict(base)
        for _, value in point:
            overrides.update(value.overrides)
        paper = study.axes[paper_axis].paper[point[paper_axis][0]] if paper_axis is not None else None
        for seed in seeds or study.seeds:
            label = " ".join(f"{name}={text}" for name, text in labels.items()) + f" seed={seed}"
            try:
                config = profile_config(profile, {**overrides, "seed": seed})
            except ConfigError as error:  # the same for every seed of this point: report it once
                failures.setdefault(str(error), []).append(label.rsplit(" seed=", 1)[0])
                break
            key = config_key(config)
            if key in seen:
                errors.append(f"{where}: runs {seen[key]!r} and {label!r} have the same config on profile "
                              f"{profile}; make their values differ or drop one")
                continue
            seen[key] = label
            runs.append(Run(key, label, labels, seed, paper, config))
    for message, refused in failures.items():
        which = "every run" if len(refused) == len(points) else "run " + ", ".join(repr(r) for r in refused)
        errors.append(f"{where}: {which} on profile {profile}: {message}")
    if errors:
        raise SpecError(errors)
    return runs


def _cli_errors(study: Study, overrides: Mapping[str, Any]) -> list[str]:
    fields = set(field_names())
    swept = {key: axis.name for axis in study.axes for key in axis.keys}
    errors = []
    for key in overrides:
        if key not in fields:
            errors.append(f"--set {key}: {unknown_key_message(key)}")
        elif key == "seed":
            errors.append("--set seed: runs take their seeds from the study; use --seeds N")
        elif key in swept:
            errors.append(f"--set {key}: is swept by axis {swept[key]} of {study.path}; "
                          "drop it, or copy the study and change its values")
    return errors


def diff(config: DINOConfig, base: DINOConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (base value, run value) for every setting where the run differs."""
    ours, theirs = config.flat(), base.flat()
    return {key: (theirs[key], value) for key, value in ours.items() if theirs[key] != value}
