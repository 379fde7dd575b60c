"""Stop a run that has collapsed: its remaining epochs would only confirm the verdict.

A collapsed run (``core.collapse``: the student copies a uniform or one-dimensional teacher) has
nothing left to learn, and the paper ran its collapsing arms for all 100 epochs. So a run whose
collapse rule holds at ``patience`` consecutive epoch ends, all after the first ``grace`` epochs
(``early_stop`` in the config, ``EarlyStopConfig`` below), stops there, evaluates as at
its last epoch and returns an ordinary result plus ``stopped_epoch``: an outcome, not a failure.

The decision is read from the per-epoch means the run records anyway (h(P_t) and KL of each
``"epoch"`` record), which its checkpoint holds and a resumed run replays. So the stop epoch is a
function of the training alone: a run resumed or requeued mid-way stops at the epoch an
uninterrupted one stops at, and a run resumed after its stop finds the stop in its checkpoint
and trains no further. Stopping at the last epoch is no stop: the run simply ends.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from core.collapse import CollapseRule, is_collapsed
from core.typed import ConfigError

if TYPE_CHECKING:  # core.config holds this section and calls ``check``: no import of it at run time
    from core.config import DINOConfig

Record = tuple[str, int, Mapping[str, float]]


@dataclass(frozen=True)
class EarlyStopConfig:
    """The config's ``early_stop`` section. ``grace`` and ``patience`` are durations like the
    warm-ups (epochs, or a share of the run), so they scale with a profile's length: 0 and 2 epochs
    of a 6-epoch run, 1 and 3 of tiny's 14, 10 and 20 of the paper's 100. At these defaults no
    healthy run of the published studies would have stopped: their curves (docs/results) never
    meet the collapse rule after the first epoch."""

    enabled: bool = True
    grace: Any = "10%"  # epoch ends up to here never count: the start of training is not a verdict
    patience: Any = "20%"  # rounded up to whole epochs, at least 1

    def validate(self) -> None:
        """Nothing to check without the run's length: ``check`` does, with the whole config."""


def whole_epochs(config: DINOConfig) -> tuple[int, int]:
    """(grace, patience) in whole epochs: the epochs that end within the grace, and the patience
    rounded up (``1e-9``: "20%" of 10 epochs is 2, not 2.0000000000000004 rounded up to 3)."""
    grace, patience = config.duration("early_stop.grace"), config.duration("early_stop.patience")
    return math.floor(grace + 1e-9), max(1, math.ceil(patience - 1e-9))


def check(config: DINOConfig) -> None:
    """Refuse a patience of nothing, and a grace and patience that leave no epoch to stop at."""
    section = config.early_stop
    if config.duration("early_stop.patience") == 0:
        raise ConfigError(f"early_stop.patience={section.patience!r} must be more than 0 epochs; to train "
                          "collapsed runs to the end, set early_stop.enabled = false")
    grace, patience = whole_epochs(config)
    if section.enabled and grace + patience > config.epochs:
        raise ConfigError(f"early_stop.grace={section.grace!r} and early_stop.patience={section.patience!r} "
                          f"({grace} + {patience} epochs) exceed epochs={config.epochs}: the run could never stop; "
                          "shorten them, give shares of the run ('10%'), or set early_stop.enabled = false")


class EarlyStop:
    """The stop rule of one run's config."""

    def __init__(self, config: DINOConfig, rule: CollapseRule = CollapseRule()):
        self.enabled, self.epochs, self.out_dim, self.rule = (config.early_stop.enabled, config.epochs,
                                                              config.head.out_dim, rule)
        self.grace, self.patience = whole_epochs(config)

    def verdict(self, records: Iterable[Record]) -> str | None:
        """The collapse mode to stop for after the epochs recorded so far, else None (train on)."""
        epochs = [(step, metrics) for kind, step, metrics in records if kind == "epoch"]
        if not self.enabled or len(epochs) < self.patience or epochs[-1][0] >= self.epochs:
            return None
        streak = epochs[-self.patience:]
        if streak[0][0] <= self.grace:
            return None
        modes = [self.rule.classify(m["target_entropy"], m["kl"], self.out_dim) for _, m in streak]
        return modes[-1] if all(is_collapsed(mode) for mode in modes) else None

