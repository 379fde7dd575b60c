"""Each planned run's state from the ledger: done / running / failed / missing, as a table.

A run's state is its latest attempt's; earlier attempts stay in the ledger for the record. An
attempt whose job is known dead (``liveness``) shows as failed even while its trial still says
RUNNING: ``--status`` only reads, and the next launch records the failure in the ledger.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from optuna.trial import FrozenTrial

from studies.ledger import STATE_NAMES
from studies.plan import Run

STATES = ("done", "running", "failed", "missing")


@dataclass(frozen=True)
class RunStatus:
    run: Run
    attempts: Sequence[FrozenTrial]
    died: str | None = None  # why the latest attempt's job is known dead, its trial not marked yet

    @property
    def latest(self) -> FrozenTrial | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def state(self) -> str:
        if self.died:
            return "failed"
        return STATE_NAMES.get(self.latest.state, "failed") if self.latest else "missing"


def statuses(runs: Sequence[Run], attempts: dict[str, list[FrozenTrial]],
             died: Mapping[int, str] | None = None) -> list[RunStatus]:
    """Each run's row; ``died``: trial number -> reason, for RUNNING trials whose job is gone."""
    rows = []
    for run in runs:
        trials = attempts.get(run.key, [])
        rows.append(RunStatus(run, trials, (died or {}).get(trials[-1].number) if trials else None))
    return rows


def summary(rows: Sequence[RunStatus]) -> str:
    counts = {state: sum(r.state == state for r in rows) for state in STATES}
    return f"progress: {counts['done']}/{len(rows)} done, " + ", ".join(
        f"{counts[s]} {s}" for s in STATES[1:])


def table(rows: Sequence[RunStatus], metric: str) -> str:
    header = ("run", "state", "attempt", metric, "paper", "job", "run folder / error")
    lines = [header]
    for row in rows:
        trial = row.latest
        attrs = trial.user_attrs if trial else {}
        value = trial.value if trial is not None and trial.value is not None else None
        detail = (attrs.get("error") or row.died) if row.state == "failed" else attrs.get("run_dir", "")
        lines.append((row.run.label, row.state, str(attrs.get("attempt", "")), _number(value),
                      _number(row.run.paper), str(attrs.get("job_id", "")), str(detail or "")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1] for line in lines]
    return "\n".join(text + [summary(rows)])


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.2f}"
