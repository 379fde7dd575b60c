"""A study has one identity: the run-defining options it was launched with.

The options that decide what a study's runs train (``--profile``, ``--set``, ``--data``,
``--seeds``) are recorded in ``study.json`` (``launch_options``) when a launch first writes it.
Every later command on that results folder starts from them: an option left out is taken from
the record, so ``--status``, ``--retry-failed`` and a plain relaunch see the runs that were
launched, not the study's defaults. An option given again must mean the same: the same profile
and seeds, and runs that train the same (``plan.trains``: ``epochs=2`` and ``epochs=2.0``, a
warm-up as ``"50%"`` or as its epochs, ``d`` or ``./d``, in any order, are one identity);
otherwise the command is refused, naming the differences and the fixes (leave them out, a new
``--results``, or ``--add-runs``, which adds that option set's runs to this study: a study may
hold several option sets on one profile, and then plans the runs of all of them).

The record is checked again and written under the launch lock (``claims.launching``) just before
anything is launched, so of two launchers started at once with different options only the first
launches; a launcher killed after recording leaves a record the next command reuses. A
``study.json`` from before options were recorded adopts the command's options (and the profile
it names), said in one line; the first launch records them.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from core import cli
from core.files import write_text_atomic
from studies import plan
from studies.layout import Layout
from studies.plan import Run, trains
from studies.spec import SpecError, Study

RECORD = "launch_options"  # the key of study.json that holds them


@dataclass(frozen=True)
class Options:
    """One set of run-defining options, as given (``seeds`` None: the study's own)."""

    profile: str
    set: Mapping[str, Any] = field(default_factory=dict)
    data: str | None = None
    seeds: int | None = None

    @property
    def overrides(self) -> dict[str, Any]:
        return {**cli.data_overrides(self.data), **self.set}

    @property
    def seed_range(self) -> tuple[int, ...] | None:
        return tuple(range(self.seeds)) if self.seeds else None

    def words(self) -> str:
        """The options as a command line gives them."""
        parts = [f"--profile {self.profile}", *(f"--set {k}={json.dumps(v) if not isinstance(v, str) else v}"
                                                for k, v in sorted(self.set.items()))]
        parts += [f"--data {self.data}"] * (self.data is not None) + [f"--seeds {self.seeds}"] * bool(self.seeds)
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "set": dict(sorted(self.set.items())), "data": self.data,
                "seeds": self.seeds}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Options:
        return cls(str(data["profile"]), dict(data.get("set") or {}), data.get("data"), data.get("seeds"))


@dataclass(frozen=True)
class Given:
    """What the command line gives; None (or empty) where it leaves an option out."""

    profile: str | None = None
    set: Mapping[str, Any] = field(default_factory=dict)
    data: str | None = None
    seeds: int | None = None

    def any(self) -> bool:
        return self.profile is not None or bool(self.set) or self.data is not None or self.seeds is not None

    def filled(self, base: Options) -> Options:
        """These options, with ``base``'s wherever one is left out (each ``--set`` key is an
        option of its own: ``--set lr=...`` keeps the recorded ``--set epochs=...``)."""
        return Options(self.profile or base.profile, {**base.set, **self.set},
                       self.data if self.data is not None else base.data,
                       self.seeds if self.seeds is not None else base.seeds)


@dataclass(frozen=True)
class Identity:
    """What a command works on: ``selected`` option sets (their runs), and ``record``, what
    ``study.json`` holds once this command launches; ``seen`` is the record as it was read."""

    record: tuple[Options, ...]
    selected: tuple[Options, ...]
    seen: Any
    note: str | None = None

    @property
    def profile(self) -> str:
        return self.selected[0].profile


Planner = Callable[[Options], Sequence[Run]]


def read_plan(results: Path) -> dict[str, Any] | None:
    """The results folder's ``study.json``; None if there is none (or it cannot be read: the
    launch rewrites it)."""
    try:
        return json.loads(Layout(results).plan.read_text())
    except (OSError, ValueError):
        return None


def resolve(study: Study, plan_data: Mapping[str, Any] | None, given: Given, add_runs: bool,
            runs_of: Planner, results: Path) -> Identity:
    """Which option sets a command works on; raises ``SpecError`` (one line) when it gives
    options that differ from the recorded ones without ``add_runs``."""
    seen = plan_data.get(RECORD) if plan_data else None
    if not seen:
        legacy = plan_data is not None
        profile = given.profile or (plan_data or {}).get("profile") or study.profile
        options = given.filled(Options(profile))
        note = _adopted(plan_data, options, runs_of) if legacy else None
        return Identity((options,), (options,), None, note)
    record = tuple(Options.from_json(o) for o in seen)
    if not given.any():
        return Identity(record, record, seen)
    options = given.filled(record[0])
    match = next((o for o in record if same(o, options, runs_of)), None)
    if match is not None:
        return Identity(record, (match,), seen)
    if add_runs and options.profile == record[0].profile:
        return Identity((*record, options), (options,), seen)
    raise SpecError([refusal(study, results, record, options, add_runs, runs_of)])


def same(a: Options, b: Options, runs_of: Planner) -> bool:
    """Whether two option sets plan the same runs, each training the same."""
    if a == b:
        return True
    if a.profile != b.profile:
        return False
    runs_a, runs_b = runs_of(a), runs_of(b)
    return [(r.label, trains(r.config)) for r in runs_a] == [(r.label, trains(r.config)) for r in runs_b]


def differences(a: Options, b: Options, runs_of: Planner) -> list[str]:
    """What ``b`` changes from ``a``: the profile, the seeds, each setting of its first run as
    written (a warm-up of "1%" that scales with a changed ``epochs`` is not one more change)."""
    if a.profile != b.profile:  # the rest would differ with it
        return [f"profile {a.profile} -> {b.profile}"]
    runs_a, runs_b = runs_of(a), runs_of(b)
    seeds_a, seeds_b = sorted({r.seed for r in runs_a}), sorted({r.seed for r in runs_b})
    found = [f"seeds {_seeds(seeds_a)} -> {_seeds(seeds_b)}"] if seeds_a != seeds_b else []
    if runs_a and runs_b:
        old, new = runs_a[0].config.flat(), runs_b[0].config.flat()  # as written, not as derived
        found += [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old.keys() | new.keys())
                  if old.get(k) != new.get(k)]
    return found


def refusal(study: Study, results: Path, record: Sequence[Options], options: Options, add_runs: bool,
            runs_of: Planner) -> str:
    launched = " | ".join(o.words() for o in record)
    changes = ", ".join(differences(record[0], options, runs_of)) or "other runs"
    fix = ("a study's runs share one profile: give a new --results for this one" if add_runs else
           "leave the options out to reuse the recorded ones, give a new --results for a new study, or add "
           "--add-runs to add these runs to this study")
    return (f"--results {results}: study {study.name} there was launched with {launched}; this command plans "
            f"{options.words()} ({changes}): {fix}")


def recheck(study: Study, results: Path, identity: Identity, given: Given, add_runs: bool,
            runs_of: Planner) -> Identity:
    """``identity`` again from ``study.json`` as it is now (call under the launch lock): the
    same if no launcher recorded options since it was read; refused if one recorded others."""
    plan_data = read_plan(results)
    now = plan_data.get(RECORD) if plan_data else None
    if not now or now == identity.seen:
        return identity
    fresh = resolve(study, plan_data, given, add_runs, runs_of, results)
    if len(fresh.selected) != len(identity.selected) or not all(
            same(a, b, runs_of) for a, b in zip(identity.selected, fresh.selected)):
        raise SpecError([f"--results {results}: another launcher recorded other options for study {study.name} "
                         "while this command was being checked; run it again"])
    return fresh


def _adopted(plan_data: Mapping[str, Any], options: Options, runs_of: Planner) -> str:
    listed = {r.get("key") for r in plan_data.get("runs", [])}
    planned = {r.key for r in runs_of(options)}
    unplanned = len(listed - planned)
    tail = (f"; {unplanned} of the {len(listed)} runs it lists are not planned by them: give the options they "
            "were launched with" if unplanned else "")
    return f"study.json records no launch options (written before they were): adopting {options.words()}{tail}"


def _seeds(seeds: Sequence[int]) -> str:
    return ", ".join(map(str, seeds))


def planner(study: Study) -> Planner:
    """``plan.expand`` of an option set, each set expanded once per command."""
    expanded: dict[str, list[Run]] = {}

    def runs_of(options: Options) -> list[Run]:
        key = json.dumps(options.to_json(), sort_keys=True)
        if key not in expanded:
            expanded[key] = plan.expand(study, options.profile, options.overrides, options.seed_range)
        return expanded[key]
    return runs_of


def union(groups: Iterable[Sequence[Run]]) -> list[Run]:
    """The runs of several option sets, each once, in order."""
    runs: dict[str, Run] = {}
    for group in groups:
        for run in group:
            runs.setdefault(run.key, run)
    return list(runs.values())


def write_plan(results: Path, study: Study, profile: str, cluster: str, storage: str, record: Sequence[Options],
               runs: Sequence[Run]) -> None:
    """``study.json``: the study as run last (axes, labels, paper numbers, a boundary study's
    search, every run's key) for reports, and the options it was launched with."""
    results.mkdir(parents=True, exist_ok=True)
    plan_data = {
        "study": study.name, "file": str(study.path), "description": study.description,
        "reference": study.reference, "metric": study.metric, "direction": study.direction,
        "profile": profile, "cluster": cluster, "storage": storage, RECORD: [o.to_json() for o in record],
        "axes": [{"name": a.name, "key": a.key, "labels": [v.label for v in a.values],
                  "paper": list(a.paper) if a.paper else None} for a in study.axes],
        "boundary": asdict(study.boundary) if study.boundary else None,
        "runs": [{"key": r.key, "label": r.label, "axes": dict(r.axes), "seed": r.seed, "paper": r.paper,
                  "name": r.name} for r in runs],
    }
    # another launcher of the study, or a report being built, may read it now
    write_text_atomic(Layout(results).plan, json.dumps(plan_data, indent=2))
