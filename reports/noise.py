"""How much k-NN top-1 moves between seeds of one config, per profile: measured once, kept as data.

A study with one seed per setting has no spread of its own, so a difference between two of its
settings can only be weighed against the seed noise measured for its profile (``reports.verdict``).
Each figure names the command that measured it, so that it can be measured again when the profile
changes; a profile without a figure gets no verdict on one-seed differences ("not resolved").
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NoiseFigure:
    """The sample standard deviation (k-NN top-1 points) of ``seeds`` runs of one config."""

    std: float
    seeds: int
    command: str

    @property
    def df(self) -> int:
        """Degrees of freedom of ``std``: the t quantile a one-seed comparison uses."""
        return self.seeds - 1


SEED_NOISE: dict[str, NoiseFigure] = {
    # teacher k-NN top-1 of tiny at seeds 0 and 1: 72.18 and 71.59 (one thread per run, AMD EPYC,
    # 2026-12-01). Two seeds give one degree of freedom, so a one-seed difference must exceed
    # t(1) x 0.42 x sqrt(2), about 7.5 points, to count: deliberately cautious until more seeds run.
    "tiny": NoiseFigure(std=0.42, seeds=2, command="python -m core.train --profile tiny --set seed=S, S = 0, 1"),
}
