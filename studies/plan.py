"""Expand a study into runs: the full grid of its axes times its seeds, on one profile.

Each run is a complete, validated trainer config plus a stable key, the hash of the canonical
config, so the ledger recognises the same point in a later invocation whatever its label. The
order in which overrides apply is fixed and conflicts are errors rather than silent wins:
profile < study ``set`` < study ``profiles.<p>.set`` < ``--data``/``--set`` < axis values < seed.

Two runs that would train the same are refused, also when their values are written differently
(``0.04`` and ``"0.04->0.04"``); and before a launch, each distinct data config is checked where
the launcher runs (``core.preflight``, no torch): a data set that is missing, or smaller than
``data.train_subset`` or one batch per rank, would otherwise fail every job after the study started.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from core import preflight, profiles
from core.config import ConfigError, DINOConfig, field_names, parse_teacher_temp, unknown_key_message
from core.preflight import DataNotFoundError
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


# Settings that a number of epochs or a share of the run ("10%") can both give.
DURATIONS = ("optim.warmup_epochs", "loss.teacher_temp_warmup_epochs", "head.freeze_last_layer")


def config_key(config: DINOConfig) -> str:
    return _key(config.to_dict())


def _key(values: Mapping[str, Any]) -> str:
    """``config_key`` of the config whose ``to_dict()`` is ``values``."""
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def expand(study: Study, profile: str, cli_overrides: Mapping[str, Any] | None = None,
           seeds: tuple[int, ...] | None = None) -> list[Run]:
    """Every run of ``study`` on ``profile``; raises ``SpecError`` naming each bad run or key."""
    where = str(study.path)
    try:
        profile = profiles.resolve(profile)
    except ConfigError as error:
        raise SpecError([f"--profile: {error}"]) from None
    cli_overrides = dict(cli_overrides or {})
    errors = [f"--set {key}: {problem}" for key in cli_overrides if (problem := override_problem(study, key))]
    if errors:
        raise SpecError(errors)
    base = {**study.overrides, **study.profile_overrides.get(profile, {}), **cli_overrides}
    paper_axis = next((i for i, a in enumerate(study.axes) if a.paper is not None), None)
    runs: list[Run] = []
    seen: dict[str, str] = {}  # what a run trains -> the first point that trains it
    failures: dict[str, list[str]] = {}  # ConfigError message -> the points it refuses
    points = list(itertools.product(*(enumerate(axis.values_for(profile)) for axis in study.axes)))
    try:
        start = profiles.load(profile).config  # read once, not once per run
    except ConfigError as error:  # the profile's own problem, which refuses every run
        raise SpecError([f"{where}: every run on profile {profile}: {error}"]) from None
    seed_list = seeds or study.seeds
    for point in points:  # one (index, value) per axis
        labels = {axis.name: value.label for axis, (_, value) in zip(study.axes, point)}
        point_label = " ".join(f"{axis_name}={text}" for axis_name, text in labels.items())  # less its seed
        overrides = dict(base)
        for _, value in point:
            overrides.update(value.overrides)
        paper = study.axes[paper_axis].paper[point[paper_axis][0]] if paper_axis is not None else None
        try:  # once per point: its runs' configs, and what they train, differ in the top-level seed alone
            built = start.replace({**overrides, "seed": seed_list[0]})
        except ConfigError as error:  # the same for every seed of this point: report it once
            failures.setdefault(str(error), []).append(point_label)
            continue
        values, trained = built.to_dict(), _trained(built)
        for seed in seed_list:
            config = built if seed == built.seed else dataclasses.replace(built, seed=seed)
            first = seen.setdefault(json.dumps({**trained, "seed": seed}, sort_keys=True), point_label)
            if first != point_label:
                duplicate = (f"{where}: runs {first!r} and {point_label!r} are duplicates: the same config "
                             f"on profile {profile}; make their values differ or drop one")
                if duplicate not in errors:  # once per pair of points, whatever the seeds
                    errors.append(duplicate)
                continue
            label = f"{point_label} seed={seed}"
            runs.append(Run(_key({**values, "seed": seed}), label, labels, seed, paper, config))
    errors.extend(f"{where}: {line}" for line in _grouped(failures, len(points), profile))
    if errors:
        raise SpecError(errors)
    return runs


def override_problem(study: Study, key: str) -> str | None:
    """Why ``--set key=...`` cannot apply to every run of ``study``; None if it can."""
    swept = {swept_key: axis.name for axis in study.axes for swept_key in axis.keys}
    if key not in field_names():
        return unknown_key_message(key)
    if key == "seed":
        return "runs take their seeds from the study; use --seeds N"
    if key in swept:
        return f"is swept by axis {swept[key]} of {study.path}; drop it, or copy the study and change its values"
    return None


def data_problems(runs: list[Run], profile: str, tasks: int, labels_for: str = "") -> list[str]:
    """What ``core.preflight`` refuses in the runs' data on ``tasks`` processes per run, one line
    per problem, each distinct data config and batch size checked once."""
    verdicts: dict[str, str | None] = {}
    failures: dict[str, list[str]] = {}
    for run in runs:
        data = json.dumps([dataclasses.asdict(run.config.data), run.config.batch_size], sort_keys=True)
        if data not in verdicts:
            try:
                preflight.check(run.config, tasks, labels_for)
                verdicts[data] = None
            except (ConfigError, DataNotFoundError) as error:
                verdicts[data] = str(error)
        if verdicts[data] and _point(run.label) not in failures.setdefault(verdicts[data], []):
            failures[verdicts[data]].append(_point(run.label))
    return _grouped(failures, len({_point(run.label) for run in runs}), profile)


def _grouped(failures: Mapping[str, list[str]], points: int, profile: str) -> list[str]:
    """One line per message, naming the points it refuses (or every run)."""
    return [f"{'every run' if len(refused) == points else 'run ' + ', '.join(map(repr, refused))} on profile "
            f"{profile}: {message}" for message, refused in failures.items()]


def _point(label: str) -> str:
    """A run's label without its seed: the point of the grid it is."""
    return label.rsplit(" seed=", 1)[0]


def trains(config: DINOConfig) -> str:
    """What a run trains, whichever way its values are written: the teacher temperature as its
    (start, end), durations in epochs (the temperature's warm-up only if it ramps), and folders
    as absolute paths (``d`` and ``./d`` are one data set). Two configs that train the same give
    the same text, which is how duplicate runs and a relaunch's options are recognised."""
    return json.dumps(_trained(config), sort_keys=True)


def _trained(config: DINOConfig) -> dict[str, Any]:
    """What ``trains`` writes, by dotted key."""
    flat = config.flat()
    start, end = parse_teacher_temp(config.loss.teacher_temp)
    flat["loss.teacher_temp"] = [start, end]
    for key in DURATIONS:
        flat[key] = float(config.duration(key))
    if start == end:
        del flat["loss.teacher_temp_warmup_epochs"]
    for key, value in flat.items():
        if key.endswith("path") and isinstance(value, str) and value:
            flat[key] = os.path.abspath(value)
    return flat


def diff(config: DINOConfig, base: DINOConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (base value, run value) for every setting where the run differs."""
    ours, theirs = config.flat(), base.flat()
    return {key: (theirs[key], value) for key, value in ours.items() if theirs[key] != value}
