"""A short, automatic verdict per table row: does this study agree with the paper?

A small model on Fashion-MNIST cannot reproduce ImageNet accuracies, but it can reproduce the
paper's *claims*: which setting is best, which way accuracy moves, which settings collapse. So a
row is judged on direction and collapse, never on the absolute number (the difference to the
paper's number is shown only at the paper's scale, ``PAPER_SCALE_PROFILES``):

* **collapse**: the paper's collapse expectation for a row comes from its k-NN number (the paper
  writes 0.1, chance on 1000 classes, for a collapsed run: any number <= ``PAPER_COLLAPSE_MAX``)
  or from the config (section 5.3: no centering -> one dimension, no sharpening -> uniform);
  otherwise the paper expects no collapse. A row counts as collapsed when most of its finished
  seeds collapsed (``reports.collapse``). Collapsed as expected (same mode where the paper names
  one) -> "collapsed as in the paper"; a collapse on one side only -> "differs".
* **direction**: among the rows that do not collapse in the paper, the one with the paper's best
  number is the reference (on a grid of several axes: per combination of the axes that carry no
  paper numbers, since the paper's numbers vary along one axis only). Every other row's
  difference to it here and in the paper is read as above / level / below, "level" meaning
  within ``TIE`` points in the paper and within max(``TIE``, the 95 % half-widths of both rows
  combined in quadrature) here. Same reading -> "matches"; the reference row itself matches when
  no other row beats it here beyond that margin.
* "pending" while a row (or the reference) has no finished run; "no comparison" where the paper
  gives no number and nothing collapsed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

PAPER_SCALE_PROFILES = ("vits16_imagenet",)  # core.profiles: the paper's own recipe
PAPER_COLLAPSE_MAX = 1.0  # k-NN top-1 (%) at or below which the paper's number means "collapsed"
TIE = 0.5  # k-NN points within which two settings count as level (ImageNet seed noise is ~0.3)

MATCHES, COLLAPSED_AS_PAPER, DIFFERS, PENDING, NO_COMPARISON = (
    "matches", "collapsed as in the paper", "differs", "pending", "no comparison")
ANY_MODE, NO_COLLAPSE = "any", "none"


@dataclass(frozen=True)
class Verdict:
    status: str  # one of the five constants above
    text: str


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

    setting: str
    n: int  # finished seeds
    mean: float
    half_width: float  # 95 % t-interval half-width, NaN below two seeds
    paper: float | None
    collapsed: bool  # most finished seeds collapsed
    mode: str  # their most common collapse mode
    expected: str  # expected_collapse(...)
    kl: float  # mean final KL over the finished seeds
    group: tuple[str, ...] = ()  # its values on the axes without paper numbers: rows compared together


def judge(rows: list[Row]) -> list[Verdict]:
    """One verdict per row, in order. Rows are compared within their group: on a grid of several
    axes the paper's numbers vary along one of them, so only rows that agree on the others are
    compared (on a one-axis study, all rows form one group)."""
    verdicts = {}
    for group in dict.fromkeys(r.group for r in rows):
        members = [r for r in rows if r.group == group]
        candidates = [r for r in members if r.paper is not None and r.expected == NO_COLLAPSE]
        reference = max(candidates, key=lambda r: r.paper) if candidates else None
        verdicts.update({id(row): _judge(row, reference, members) for row in members})
    return [verdicts[id(row)] for row in rows]


def _judge(row: Row, reference: Row | None, rows: list[Row]) -> Verdict:
    if row.n == 0:
        return Verdict(PENDING, "no finished run yet")
    if row.expected != NO_COLLAPSE or row.collapsed:
        return _collapse_verdict(row)
    if row.paper is None or reference is None:
        return Verdict(NO_COMPARISON, f"not collapsed (KL {row.kl:.3g} nats), as the paper expects with centering "
                                      "and sharpening; the paper gives no k-NN number to compare")
    if reference.n == 0:
        return Verdict(PENDING, f"waiting for the reference setting {reference.setting} to finish")
    if row is reference:
        rivals = [r for r in rows if r is not row and r.n and not r.collapsed and r.mean - row.mean > _margin(r, row)]
        if not rivals:
            return Verdict(MATCHES, "the paper's best setting, and the best here too")
        best = max(rivals, key=lambda r: r.mean)
        return Verdict(DIFFERS, f"the paper's best setting, but {best.setting} is better here by "
                                f"{best.mean - row.mean:.1f} points")
    ours, theirs = row.mean - reference.mean, row.paper - reference.paper
    here, paper = _side(ours, _margin(row, reference)), _side(theirs, TIE)
    text = (f"{ours:+.1f} points vs {reference.setting} here ({here}), {theirs:+.1f} in the paper ({paper})")
    return Verdict(MATCHES if here == paper else DIFFERS, text)


def _collapse_verdict(row: Row) -> Verdict:
    expected = row.expected
    if expected == NO_COLLAPSE:
        paper = f"reports {row.paper:g}" if row.paper is not None else "expects no collapse"
        return Verdict(DIFFERS, f"collapsed ({row.mode}) here; the paper {paper}")
    why = (f"k-NN {row.paper:g} in the paper" if row.paper is not None and row.paper <= PAPER_COLLAPSE_MAX
           else f"the paper's mode: {expected}")
    if not row.collapsed:
        return Verdict(DIFFERS, f"the paper collapses here ({why}); not collapsed here (final KL {row.kl:.3g} nats)")
    if expected in (ANY_MODE, row.mode):
        return Verdict(COLLAPSED_AS_PAPER, f"collapsed ({row.mode}) here and in the paper ({why})")
    if row.mode == "other":
        return Verdict(COLLAPSED_AS_PAPER, f"collapsed here and in the paper, mode unclear here ({why})")
    return Verdict(DIFFERS, f"collapsed to {row.mode} here; {why}")


def _margin(a: Row, b: Row) -> float:
    widths = [w for w in (a.half_width, b.half_width) if math.isfinite(w)]
    return max(TIE, math.hypot(*widths)) if widths else TIE


def _side(difference: float, margin: float) -> str:
    if difference > margin:
        return "above"
    if difference < -margin:
        return "below"
    return "level"
