"""A short, automatic verdict per table row: does this study agree with the paper, as far as its
seeds can tell?

A small model on Fashion-MNIST cannot reproduce ImageNet accuracies, but it can reproduce the
paper's *claims*: which setting is best, which way accuracy moves, which settings collapse. So a
row is judged on direction and collapse, never on the absolute number (the difference to the
paper's number is shown only at the paper's scale, ``PAPER_SCALE_PROFILES``), and a direction only
counts once the seeds resolve it:

* **collapse**: the paper's collapse expectation for a row comes from its k-NN number (the paper
  writes 0.1, chance on 1000 classes, for a collapsed run: any number <= ``PAPER_COLLAPSE_MAX``)
  or from the config (section 5.3: no centering -> one dimension, no sharpening -> uniform);
  otherwise the paper expects no collapse. A row counts as collapsed when most of its finished
  seeds collapsed. Collapsed as expected -> "collapsed as in the paper"; on one side only ->
  "differs". A collapse is a change of kind, not a few points, so it needs no interval.
* **direction**: among the rows that do not collapse in the paper, the one with the paper's best
  number is the reference (on a grid of several axes: per combination of the axes that carry no
  paper numbers, since the paper's numbers vary along one axis only). Every other row's
  difference to it here has a 95 % interval (``reports.stats.difference``: the seeds' own spread
  from two seeds on, else the profile's seed noise, ``reports.noise``). Where the paper has the
  two more than ``TIE`` points apart, the row "agrees" when the interval excludes 0 on the paper's
  side and "differs" when it excludes 0 on the other; where the paper has them level, it agrees
  when the interval lies within +-``TIE`` and differs when it excludes 0. Anything else is "not
  resolved", with the seeds per setting that would resolve it. The reference row agrees when it is
  resolved above every other healthy row, differs when one is resolved above it.
* a collapse verdict says where collapsed seeds stopped early ("stopped at epoch 2 of 6"): the
  stop is the collapse's outcome, judged like a run that trained to the end;
* no row with a collapsed seed is a rival or "best here"; "pending" while a row (or the
  reference) has no finished run; "no comparison" where the paper gives no number and nothing
  collapsed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

from reports.fmt import joined
from reports.noise import NoiseFigure
from reports.stats import Difference, Summary, difference

PAPER_SCALE_PROFILES = ("vits16_imagenet",)  # core.profiles: the paper's own recipe
PAPER_COLLAPSE_MAX = 1.0  # k-NN top-1 (%) at or below which the paper's number means "collapsed"
TIE = 0.5  # k-NN points within which the paper's two settings count as level (ImageNet seed noise is ~0.3)
SEEDS_LIMIT = 100  # beyond this many seeds per setting, "resolving" a difference is not a plan

AGREES, COLLAPSED_AS_PAPER, DIFFERS, NOT_RESOLVED, PENDING, NO_COMPARISON = (
    "agrees", "collapsed as in the paper", "differs", "not resolved", "pending", "no comparison")
JUDGED = (AGREES, COLLAPSED_AS_PAPER, DIFFERS)  # the statuses that take a side
ANY_MODE, NO_COLLAPSE = "any", "none"


@dataclass(frozen=True)
class Verdict:
    status: str  # one of the six constants above
    text: str
    seeds: int = 0  # the seeds per setting a comparison rests on


def badge(status: str, seeds: int) -> str:
    """A status as a table shows it: "not resolved at 1 seed"."""
    if status != NOT_RESOLVED:
        return status
    return f"{status} at {seeds} seed{'' if seeds == 1 else 's'}"


def paper_scale(profile: str) -> bool:
    """Whether runs on this profile are comparable with the paper's numbers in absolute terms."""
    return profile in PAPER_SCALE_PROFILES


def expected_collapse(paper: float | None, config: Mapping[str, Any]) -> str:
    """What the paper leads one to expect for a setting: a collapse mode, ``ANY_MODE`` or
    ``NO_COLLAPSE``. ``config`` is one of its runs' flat configs (empty if none started)."""
    centering, sharpening = config.get("loss.centering", True), config.get("loss.sharpening", True)
    if not centering and sharpening:
        return "one dimension"
    if centering and not sharpening:
        return "uniform"
    if not centering or (paper is not None and paper <= PAPER_COLLAPSE_MAX):
        return ANY_MODE
    return NO_COLLAPSE


@dataclass(frozen=True)
class Row:
    """What a verdict needs of one table row."""

    setting: str  # as the reader sees it: what ran, with the paper's value where it differs
    top1: Summary  # k-NN top-1 over the finished seeds
    paper: float | None
    collapsed_runs: int  # finished seeds that collapsed
    mode: str  # their most common collapse mode
    expected: str  # expected_collapse(...)
    kl: float  # mean final KL over the finished seeds
    group: tuple[str, ...] = ()  # its values on the axes without paper numbers: rows compared together
    stopped: str = ""  # "stopped at epoch 2 of 6" where collapsed seeds stopped early (core.early_stop)

    @property
    def n(self) -> int:
        return self.top1.n

    @property
    def collapsed(self) -> bool:
        """Most of its finished seeds collapsed."""
        return self.collapsed_runs * 2 > self.n

    @property
    def healthy(self) -> bool:
        """Finished, and no seed collapsed: a mean worth ranking."""
        return self.n > 0 and self.collapsed_runs == 0


def judge(rows: list[Row], noise: NoiseFigure | None) -> list[Verdict]:
    """One verdict per row, in order. Rows are compared within their group (on a one-axis study,
    all rows form one group); ``noise`` is the profile's seed noise (None if not measured)."""
    verdicts = {}
    for group in dict.fromkeys(r.group for r in rows):
        members = [r for r in rows if r.group == group]
        candidates = [r for r in members if r.paper is not None and r.expected == NO_COLLAPSE]
        reference = max(candidates, key=lambda r: r.paper) if candidates else None
        verdicts.update({id(row): _judge(row, reference, members, noise) for row in members})
    return [verdicts[id(row)] for row in rows]


def best_here(rows: list[Row], noise: NoiseFigure | None) -> tuple[Row | None, list[Row]]:
    """The healthy row with the highest mean, and the healthy rows its seeds cannot tell from it
    (the difference's interval includes 0), in table order."""
    healthy = [r for r in rows if r.healthy]
    if not healthy:
        return None, []
    best = max(healthy, key=lambda r: r.top1.mean)
    return best, [r for r in healthy if r is not best and not difference(r.top1, best.top1, noise).resolved]


def _judge(row: Row, reference: Row | None, rows: list[Row], noise: NoiseFigure | None) -> Verdict:
    if row.n == 0:
        return Verdict(PENDING, "no finished run yet")
    if row.expected != NO_COLLAPSE or row.collapsed:
        found = _collapse_verdict(row)
        return replace(found, text=f"{found.text} ({row.stopped})") if row.stopped else found
    if row.paper is None or reference is None:
        return Verdict(NO_COMPARISON, f"not collapsed (final KL {row.kl:.3g} nats); the paper gives no k-NN "
                                      "number to compare with")
    if reference.n == 0:
        return Verdict(PENDING, f"waiting for the reference setting {reference.setting} to finish")
    if row is reference:
        return _reference_verdict(row, rows, noise)
    here = difference(row.top1, reference.top1, noise)
    theirs = row.paper - reference.paper
    text = f"{_signed(here)} points vs {reference.setting} here, {theirs:+.1f} in the paper"
    if abs(theirs) <= TIE:  # level in the paper: a resolved difference differs, a tight interval agrees
        if here.resolved:
            return Verdict(DIFFERS, f"{text}, where the two are level")
        if abs(here.value) + here.half_width <= TIE:
            return Verdict(AGREES, f"{text}: level in both")
        margin, goal = (TIE - abs(here.value), "show them level") if abs(here.value) < TIE else (
            abs(here.value), "resolve the difference")
        return _unresolved(text, here, margin, goal)
    if here.resolved:
        same_side = (here.value > 0) == (theirs > 0)
        return Verdict(AGREES if same_side else DIFFERS, text)
    return _unresolved(text, here, abs(here.value), "resolve it")


def _reference_verdict(row: Row, rows: list[Row], noise: NoiseFigure | None) -> Verdict:
    rivals = [(r, difference(r.top1, row.top1, noise)) for r in rows if r is not row and r.healthy]
    if not rivals:
        waiting = any(r.n == 0 for r in rows)
        return Verdict(PENDING if waiting else NO_COMPARISON, "the paper's best; no other healthy setting "
                       + ("has finished yet" if waiting else "to compare with here"))
    above = [(r, d) for r, d in rivals if d.resolved and d.value > 0]
    if above:
        best, d = max(above, key=lambda pair: pair[1].value)
        return Verdict(DIFFERS, f"the paper's best, but {best.setting} is better here by {_signed(d)} points")
    level = [(r, d) for r, d in rivals if not d.resolved]
    if not level:
        closest, d = max(rivals, key=lambda pair: pair[1].value)
        return Verdict(AGREES, f"the paper's best, and the best here, {_signed(d, -1)} points above the next, "
                               f"{closest.setting}")
    closest, d = max(level, key=lambda pair: pair[1].value)
    text = f"the paper's best; level here within noise with {joined([r.setting for r, _ in level])}"
    return _unresolved(text, d, abs(d.value), f"separate it from {closest.setting}")


def _unresolved(text: str, here: Difference, margin: float, goal: str) -> Verdict:
    """"not resolved", with the seeds per setting at which the interval would be narrow enough."""
    need = here.seeds_for(margin, SEEDS_LIMIT) if margin else None
    if need:
        plan = f"about {need} seeds per setting would {goal}"
    elif math.isfinite(here.half_width):  # the margin is too thin for any sensible number of seeds
        plan = f"more than {SEEDS_LIMIT} seeds per setting would be needed to {goal}"
    else:
        plan = "no seed noise is recorded for this profile to weigh it against"
    return Verdict(NOT_RESOLVED, f"{text}: {plan}", here.seeds)


def _collapse_verdict(row: Row) -> Verdict:
    expected, seeds = row.expected, f"{row.collapsed_runs} of {row.n} seed{'' if row.n == 1 else 's'}"
    if expected == NO_COLLAPSE:
        return Verdict(DIFFERS, f"collapsed ({row.mode}) in {seeds} here; "
                                + (f"the paper reports {row.paper:g}" if row.paper is not None
                                   else "the paper expects no collapse"))
    if expected == ANY_MODE:
        why = f"k-NN {row.paper:g}" if row.paper is not None else "no centering and no sharpening"
    else:
        why = f"to {expected}"
    if not row.collapsed:
        return Verdict(DIFFERS, f"not collapsed here (final KL {row.kl:.3g} nats, {seeds} collapsed); "
                                f"the paper collapses ({why})")
    if expected == ANY_MODE:
        return Verdict(COLLAPSED_AS_PAPER, f"collapsed ({row.mode}) in {seeds}, as did the paper's run ({why})")
    if row.mode == expected:
        return Verdict(COLLAPSED_AS_PAPER, f"collapsed ({row.mode}) in {seeds}, the mode the paper expects")
    if row.mode == "other":
        return Verdict(COLLAPSED_AS_PAPER, f"collapsed in {seeds}, mode unclear; the paper expects {expected}")
    return Verdict(DIFFERS, f"collapsed to {row.mode} in {seeds}; the paper expects {expected}")


def _signed(d: Difference, sign: int = 1) -> str:
    """"-0.5 ± 3.7" (just "-0.5" where nothing measures the noise)."""
    value = f"{sign * d.value:+.1f}"
    return f"{value} ± {d.half_width:.1f}" if math.isfinite(d.half_width) else value
