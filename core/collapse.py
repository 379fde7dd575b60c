"""Did a run collapse, and how? Decided from its final target entropy h(P_t) and KL(P_t || P_s).

The trainer applies the rule to its own final epoch and records the verdict in its result (and
so in the ledger and the sacred record); reports read it back with the same rule. It also applies
it at every epoch end, to stop a run that has collapsed (``core.early_stop``).

The paper (section 5.3, Fig. 7) splits the cross-entropy as H(P_t, P_s) = h(P_t) + KL: in either
collapse mode the student copies the teacher, so KL -> 0, and the target entropy tells the two
modes apart: without centering one dimension dominates (h -> 0), without sharpening the output is
uniform (h -> ln K). Hence the rule, applied to the last epoch's means (the trainer's final
``target_entropy`` and ``kl``):

* **collapsed** when KL < ``kl_max`` (0.05 nats by default): the student has nothing left to learn;
* its **mode** from h / ln K: at most ``one_dimension_max`` (0.1) -> "one dimension", at least
  ``uniform_min`` (0.9) -> "uniform", in between -> "other" (collapsed, mode unclear);
* also **collapsed (uniform)**, whatever the KL, when h(P_t) >= ``uniform_targets_min`` (0.98)
  ln K: the teacher's targets are uniform and carry nothing to learn, even while the student
  still differs from them. This is how the teacher-update failures of the paper (student copy,
  previous iteration) end on tiny: h at 0.986-0.999 ln K, KL 0.16-1.09, k-NN 12 points below a
  random network. Healthy tiny runs end at or below 0.957 ln K. (No such shortcut for one
  dimension: argmax targets, tau_t = 0, have h = 0 by construction);
* "unknown" when the run logged no entropy or KL yet, "none" otherwise.

K is the run's ``head.out_dim``. A healthy tiny run (K = 1024, ln K = 6.93) ends with KL near
0.3 nat; its collapsed twins (centering only, sharpening only) end near 0.001 to 0.003, two orders
of magnitude lower, so the threshold is not delicate. The
k-NN accuracy is deliberately not part of the rule: it is what the collapse mark is compared with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

NONE, UNKNOWN = "none", "unknown"
MODES = ("one dimension", "uniform", "other")  # the collapsed modes


@dataclass(frozen=True)
class CollapseRule:
    kl_max: float = 0.05  # nats
    one_dimension_max: float = 0.1  # h(P_t) / ln K
    uniform_min: float = 0.9  # h(P_t) / ln K
    uniform_targets_min: float = 0.98  # h(P_t) / ln K: uniform targets, collapsed whatever the KL

    def classify(self, entropy: float, kl: float, out_dim: int) -> str:
        """One of ``MODES``, ``NONE`` or ``UNKNOWN`` for a run's final h(P_t) and KL."""
        if not (math.isfinite(entropy) and math.isfinite(kl)) or out_dim < 2:
            return UNKNOWN
        fraction = entropy / math.log(out_dim)
        if fraction >= self.uniform_targets_min:
            return MODES[1]
        if kl >= self.kl_max:
            return NONE
        if fraction <= self.one_dimension_max:
            return MODES[0]
        if fraction >= self.uniform_min:
            return MODES[1]
        return MODES[2]

    def describe(self) -> str:
        """The rule in one sentence, for the report's notes."""
        return (f"a run is collapsed when its final KL(P_t || P_s) is below {self.kl_max:g} nats; the mode is "
                f"\"one dimension\" when h(P_t) <= {self.one_dimension_max:g} ln K, \"uniform\" when "
                f"h(P_t) >= {self.uniform_min:g} ln K, \"other\" in between; also collapsed (uniform targets) "
                f"when h(P_t) >= {self.uniform_targets_min:g} ln K whatever the KL (final = mean over the last "
                "epoch, K = head.out_dim)")


def is_collapsed(mode: str) -> bool:
    return mode in MODES


def mark(mode: str) -> str:
    """Table text: "collapsed (uniform)", "collapsed" for an unclear mode, "" when healthy."""
    if not is_collapsed(mode):
        return ""
    return "collapsed" if mode == "other" else f"collapsed ({mode})"


def stopped_at(stops: Iterable[int], epochs: int) -> str:
    """"stopped at epoch 4 of 14", or "stopped at epochs 3, 4 of 14" for seeds that stopped at
    different epochs (``core.early_stop``)."""
    at = sorted(set(stops))
    return f"stopped at {'epoch' if len(at) == 1 else 'epochs'} {', '.join(map(str, at))} of {epochs}"


def stopped_mark(mode: str, stops: Iterable[int], epochs: int) -> str:
    """"stopped at epoch 4 of 14: collapsed (uniform)", as the trainer and the reports say it."""
    return f"{stopped_at(stops, epochs)}: {mark(mode)}"
