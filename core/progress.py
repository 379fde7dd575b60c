"""What a run shows while it trains: a bar for a person at a terminal, lines for a log file.

A bar redrawn in place is unreadable in a SLURM log, and the epoch summary alone comes once an
epoch, which on ImageNet is an hour. So without a terminal (stderr, where the bar goes, is not a
TTY) the trainer prints a line every ``log_every`` iterations or every ``DINO_PROGRESS_SECONDS``
seconds (default 60), whichever comes first, with an ETA from the step times measured so far in
the epoch. An environment variable, not a config key: how often a run reports changes nothing it
computes, so it must not change the run's identity (its config hash) either.
"""
from __future__ import annotations

import datetime
import math
import os
import sys
import time
from typing import Iterable, Iterator, Mapping

from tqdm import tqdm

from core.typed import ConfigError

SECONDS_ENV = "DINO_PROGRESS_SECONDS"
DEFAULT_SECONDS = 60.0
BAR, LINES, OFF = "bar", "lines", "off"


def mode(wanted: bool, is_main: bool) -> str:
    """``BAR`` for a person watching a terminal, ``LINES`` for a log, ``OFF`` when not wanted
    (a caller that records the run itself) and on every rank but the first."""
    if not (wanted and is_main):
        return OFF
    return BAR if sys.stderr.isatty() else LINES


def line_seconds() -> float:
    """The longest wait between two progress lines, from ``DINO_PROGRESS_SECONDS``."""
    value = os.environ.get(SECONDS_ENV, "")
    if not value:
        return DEFAULT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{SECONDS_ENV}={value!r} is not a positive number of seconds; "
                          f"unset it (every {DEFAULT_SECONDS:g} s) or give e.g. {SECONDS_ENV}=30")
    return seconds


class EpochProgress:
    """One epoch's display: iterate over it instead of the loader, and ``show`` what the logged
    iterations (every ``log_every``) measured, and any other when ``due``."""

    def __init__(self, loader: Iterable, epoch: int, epochs: int, show: str, seconds: float):
        self.epoch, self.epochs, self.show_as, self.seconds = epoch, epochs, show, seconds
        self.per_epoch = len(loader)  # type: ignore[arg-type]
        self.batches = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=show != BAR,
                            dynamic_ncols=True)
        self.started = self.last_line = time.monotonic()

    def __iter__(self) -> Iterator:
        return iter(self.batches)

    def due(self) -> bool:
        """Whether a line is due by the clock (lines only): the trainer shows its logged
        iterations anyway, and reads the others' values (a device sync) only when this says so."""
        return self.show_as == LINES and time.monotonic() - self.last_line >= self.seconds

    def show(self, i: int, values: Mapping[str, float]) -> None:
        """Iteration ``i`` of the epoch (0-based) measured ``values`` (loss, target_entropy, kl)."""
        if self.show_as == BAR:
            self.batches.set_postfix(loss=f"{values['loss']:.3f}", h=f"{values['target_entropy']:.2f}",
                                     kl=f"{values['kl']:.3f}")
        if self.show_as != LINES:
            return
        now = self.last_line = time.monotonic()
        done = i + 1
        per_step = (now - self.started) / done
        left_epoch = self.per_epoch - done
        left_run = left_epoch + (self.epochs - self.epoch - 1) * self.per_epoch
        print(f"epoch {self.epoch + 1}/{self.epochs}  it {done}/{self.per_epoch}  loss {values['loss']:.4f}  "
              f"h(P_t) {values['target_entropy']:.3f}  KL {values['kl']:.4f}  {per_step:.3g} s/it  "
              f"ETA epoch {_clock(left_epoch * per_step)}, training {_clock(left_run * per_step)}", flush=True)


def _clock(seconds: float) -> str:
    """``0:02:13``."""
    return str(datetime.timedelta(seconds=round(seconds)))


def summary_line(epoch: int, epochs: int, m: Mapping[str, float]) -> str:
    """The line every epoch end prints, terminal or log."""
    return (f"epoch {epoch}/{epochs}  loss {m['loss']:.4f}  h(P_t) {m['target_entropy']:.3f}  "
            f"KL {m['kl']:.4f}  lr {m['lr']:.2e}  tau_t {m['teacher_temp']:.3f}  "
            f"{m['epoch_seconds']:.1f}s ({m['images_per_second']:.0f} img/s)")
