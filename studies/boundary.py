"""Where a continuous setting turns runs from healthy to collapsed: bisection on the runs' own
collapse verdicts.

A boundary study declares ``[boundary]`` (``studies.axes.Boundary``: the setting, its range
[low, high], a scale, a tolerance and a budget of probes) instead of ``[[axes]]``. Its probes are
ordinary runs: the values probed so far are the values of the study's one axis
(``study_with_probes``), so planning, the ledger, ``--status`` and the reports see a one-axis
study whose values grow. Nothing of the search is stored apart from those runs: its state is
worked out from the ledger every time (``state``), which is how it resumes after a killed
launcher or in a later command, and why a rerun proposes the same probes.

The search probes both ends first, and alone: if their verdicts agree, there is no boundary in
[low, high] to find, and every run between them would be spent for nothing. Then the bracket, the
two nearest probes with different verdicts, is cut into equal parts on the scale by as many
probes as may run at once (k-section: P probes shrink it P + 1 times per round, using the P slots
at the price of more runs per halving than bisection's one), never more than the tolerance
still needs or the budget allows, until the bracket is at most the tolerance wide (on the
scale: the value's units, or decades) or the budget is spent. The verdict is a yes or no presumed
monotone in the value, which bisection answers in the fewest probes; an optuna sampler models a
metric to optimise, not a threshold, so none is used. Probe values are rounded to the power of
ten at most a tenth of the smallest gap between neighbours (0.287, not 0.28666...): each stays
strictly inside its gap, so the bracket still holds the boundary and still shrinks.

A probe's verdict is the majority of its runs' (its seeds': an odd number, ``studies.spec``
refuses an even one): "none" is healthy, a collapse mode (``core.collapse``) collapsed. A run that
finished without a verdict ("unknown") counts for neither side, and a value whose runs give no
majority has no verdict: the search goes around it, probing the gaps either side. A failed run
is no verdict either, but says nothing about its value (its job may have been killed), so a
failed probe where the boundary is sought holds the search until ``--retry-failed`` reruns it.
Where the verdict flips more than once (it is not monotone), the bracket is the flip nearest the
healthy end, where runs first turn; ``State.flips`` says how many there are.

A boundary study has no ``[[axes]]`` beside its boundary (one boundary per study: a boundary per
point of a grid is a study per point); its ``set`` and profiles apply to every probe.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Sequence

from optuna.trial import FrozenTrial

from core.collapse import NONE, is_collapsed
from studies import status
from studies.axes import Boundary, value_label
from studies.layout import Attempt
from studies.ledger import Ledger
from studies.plan import Run
from studies.spec import Study

HEALTHY, COLLAPSED, NO_VERDICT, FAILED, UNFINISHED = "healthy", "collapsed", "no verdict", "failed", "unfinished"
NOT_LAUNCHED = "not launched"  # planned, no run of it in the ledger yet
# Why a search is over
TOLERANCE, BUDGET, NO_BOUNDARY, NO_END_VERDICT = ("tolerance reached", "budget spent", "no boundary in range",
                                                  "no verdict at an end")

Recorded = tuple[float, str, str | None]  # one run of a probe: its value, state and recorded collapse mode


@dataclass(frozen=True)
class State:
    bracket: tuple[float, float] | None  # the nearest probes either side of the boundary, lower first
    stop: str | None  # why the search is over (TOLERANCE, BUDGET, NO_BOUNDARY, NO_END_VERDICT); None if not
    why: str  # one line: where the search stands, or why it stopped
    held: tuple[float, ...] = ()  # probes the next round waits for: unfinished, or failed (to retry)
    flips: int = 0  # how often the verdict changes along the range: 1 when monotone


def describe(boundary: Boundary) -> str:
    """The search as declared, in one line (the dry run, the report)."""
    return (f"{boundary.name} ({boundary.key}) in [{value_label(boundary.low)}, {value_label(boundary.high)}], "
            f"{boundary.scale} scale, until the bracket is at most {boundary.units(boundary.tolerance)} wide or "
            f"{boundary.budget} probes are spent; the two ends first")


def study_with_probes(study: Study, values: Iterable[float]) -> Study:
    """``study`` with these probe values as its one axis (any order, repeats ignored)."""
    return replace(study, axes=(study.boundary.axis(values),))


def probed(trials: Iterable[FrozenTrial], name: str) -> tuple[float, ...]:
    """The values of axis ``name`` that the ledger's trials were launched at, in increasing order."""
    return tuple(sorted({float(axes[name]) for t in trials if name in (axes := Attempt.of(t).axes)}))


def recorded(rows: Iterable[status.RunStatus], name: str) -> list[Recorded]:
    """Each planned run of the probes as ``verdicts`` takes it (``status.statuses`` rows)."""
    return [(float(row.run.axes[name]), row.state, row.latest.user_attrs.get("collapse") if row.latest else None)
            for row in rows]


def verdicts(runs: Iterable[Recorded]) -> dict[float, str]:
    """Probe value -> its verdict: HEALTHY or COLLAPSED by the majority of its finished runs;
    NOT_LAUNCHED while none of them is in the ledger; UNFINISHED while one of them is running,
    pending or missing; FAILED if one failed; else NO_VERDICT (a tie, or runs without a verdict)."""
    by_value: dict[float, list[tuple[str, str | None]]] = {}
    for value, state_, mode in runs:
        by_value.setdefault(value, []).append((state_, mode))
    return {value: _verdict(found) for value, found in by_value.items()}


def _verdict(runs: list[tuple[str, str | None]]) -> str:
    if all(state_ == "missing" for state_, _ in runs):
        return NOT_LAUNCHED
    if any(state_ not in ("done", "failed") for state_, _ in runs):
        return UNFINISHED
    if any(state_ == "failed" for state_, _ in runs):
        return FAILED
    healthy = sum(mode == NONE for _, mode in runs)
    collapsed = sum(is_collapsed(mode) for _, mode in runs)
    return HEALTHY if healthy > collapsed else COLLAPSED if collapsed > healthy else NO_VERDICT


def state(boundary: Boundary, found: Mapping[float, str]) -> State:
    """Where the search stands, from each probe's verdict (``verdicts``); probes outside
    [low, high] (of an earlier declaration) are left out."""
    inside = {v: o for v, o in found.items() if boundary.low <= v <= boundary.high}
    ends = (boundary.low, boundary.high)
    if any(end not in inside for end in ends):
        return State(None, None, "probing the ends first")
    decided = sorted((v, o) for v, o in inside.items() if o in (HEALTHY, COLLAPSED))
    flips = sum(a[1] != b[1] for a, b in zip(decided, decided[1:]))
    at_ends = {inside[end] for end in ends}
    bracket = _first_flip(decided) if at_ends == {HEALTHY, COLLAPSED} else None
    unfinished = tuple(sorted(v for v, o in inside.items() if o == UNFINISHED))
    if unfinished:
        return State(bracket, None, f"waiting for {_probes(unfinished)} to finish", unfinished, flips)
    unlaunched = tuple(sorted(v for v, o in inside.items() if o == NOT_LAUNCHED))
    if unlaunched:
        return State(bracket, None, f"{_probes(unlaunched)} not launched yet: the study's command launches "
                                    f"{'them' if len(unlaunched) > 1 else 'it'}", unlaunched, flips)
    for end in ends:
        if inside[end] == FAILED:
            return State(None, None, f"the end {value_label(end)} failed: --retry-failed reruns it", (end,), flips)
        if inside[end] == NO_VERDICT:
            return State(None, NO_END_VERDICT, f"no verdict at the end {value_label(end)}: the search needs one at "
                                               "both ends; declare another low or high", flips=flips)
    if bracket is None:
        return State(None, NO_BOUNDARY, f"no boundary in [{_values(ends, ', ')}]: both ends are "
                                        f"{inside[boundary.low]}", flips=flips)
    a, b = bracket
    width = boundary.width(a, b)
    where = f"bracket [{value_label(a)}, {value_label(b)}], {boundary.units(width)} wide"
    if width <= boundary.tolerance:
        return State(bracket, TOLERANCE, f"tolerance reached: {where}, at most {boundary.units(boundary.tolerance)}",
                     flips=flips)
    failed = tuple(v for v in sorted(inside) if a < v < b and inside[v] == FAILED)
    if failed:
        return State(bracket, None, f"{where}: {_probes(failed)} in it failed: --retry-failed reruns "
                                    f"{'them' if len(failed) > 1 else 'it'}", failed, flips)
    spent = f"{len(inside)} of {boundary.budget} probes spent"
    if len(inside) >= boundary.budget:
        return State(bracket, BUDGET, f"budget spent ({spent}): {where}, wider than "
                                      f"{boundary.units(boundary.tolerance)}", flips=flips)
    return State(bracket, None, f"{where}, wider than {boundary.units(boundary.tolerance)}; {spent}", flips=flips)


def next_probes(boundary: Boundary, found: Mapping[float, str], parallel: int) -> tuple[float, ...]:
    """The values to launch now, at most ``parallel`` of them, in increasing order; none while
    the search waits for probes or is over."""
    now = state(boundary, found)
    if now.stop or now.held:
        return ()
    if now.bracket is None:  # the ends not probed yet
        return tuple(end for end in (boundary.low, boundary.high) if end not in found)
    a, b = now.bracket
    spent = sum(boundary.low <= v <= boundary.high for v in found)
    fixed = sorted({a, b, *(v for v, o in found.items() if a < v < b and o == NO_VERDICT)})
    most = min(parallel, boundary.budget - spent)  # at least 1: state() stops a search whose budget is spent

    def narrow_enough(count: int) -> bool:
        every = sorted([*fixed, *_spread(boundary, fixed, count)])
        return max(boundary.width(x, y) for x, y in zip(every, every[1:])) <= boundary.tolerance
    return _spread(boundary, fixed, next((c for c in range(1, most) if narrow_enough(c)), most))


def search(study: Study, ledger: Ledger, runs_of: Callable[[Study], Sequence[Run]],
           launch: Callable[[Study], object], parallel: int) -> State:
    """Probe until the search is over or has to wait (runs still going on SLURM, a failed probe
    to retry), and return where it stands. ``runs_of``: a study's runs (``plan.expand`` with the
    command's options); ``launch``: launches what of a study is missing in ``ledger`` and
    returns when its runs are done (or submitted); ``parallel``: runs at once. Each value set is
    launched once: what a launch leaves missing (sbatch refused it) holds the search until the
    next command."""
    boundary = study.boundary
    values = set(probed(ledger.trials(), boundary.name))
    launched: set[float] | None = None
    while True:
        current = study_with_probes(study, values)
        rows = status.statuses(runs_of(current), ledger.attempts())
        if launched != values and any(row.state == "missing" for row in rows):
            launch(current)
            launched = set(values)
            continue
        found = verdicts(recorded(rows, boundary.name))
        now, probes = state(boundary, found), next_probes(boundary, found, parallel)
        print(f"{study.name} boundary: {now.why}" + (f"; next: {_values(probes)}" if probes else ""), flush=True)
        if not probes:
            return now
        values.update(probes)


def _first_flip(decided: list[tuple[float, str]]) -> tuple[float, float]:
    """The first neighbours with different verdicts, walking from the healthy end."""
    walk = decided if decided[0][1] == HEALTHY else decided[::-1]
    a, b = next((x, y) for (x, vx), (y, vy) in zip(walk, walk[1:]) if vx != vy)
    return (a, b) if a < b else (b, a)


def _spread(boundary: Boundary, fixed: list[float], count: int) -> tuple[float, ...]:
    """``count`` values in the gaps between ``fixed`` values, each gap getting them in turn where
    its parts would be widest, equally spaced in it on the scale, rounded (see the module's notes)."""
    gaps = list(zip(fixed, fixed[1:]))
    shares = [0] * len(gaps)
    for _ in range(count):
        widest = max(range(len(gaps)), key=lambda i: boundary.width(*gaps[i]) / (shares[i] + 1))
        shares[widest] += 1
    points = [boundary.value(boundary.position(x) + (boundary.position(y) - boundary.position(x)) * j / (n + 1))
              for (x, y), n in zip(gaps, shares) for j in range(1, n + 1)]
    every = sorted([*fixed, *points])
    gap = min(y - x for x, y in zip(every, every[1:]))
    digits = -math.floor(math.log10(gap / 10))
    return tuple(sorted(round(p, digits) for p in points))


def _values(values: Iterable[float], joiner: str = " and ") -> str:
    return joiner.join(map(value_label, values))


def _probes(values: Sequence[float]) -> str:
    return f"probe{'s' if len(values) > 1 else ''} {_values(values, ', ')}"
