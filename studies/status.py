"""Each planned run's state from the ledger: done / running / pending / failed / missing, as a table.

A run's state is its latest attempt's; earlier attempts stay in the ledger for the record. A
RUNNING trial is *pending* while its job waits (SLURM's queue, with squeue's reason; a local job
starting up or waiting for a slot) and *running* once it trains (``liveness.job_states``). An
attempt whose job is known dead shows as failed even while its trial still says RUNNING:
``--status`` only reads, and the next launch records the failure in the ledger.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

from optuna.trial import FrozenTrial, TrialState

from studies.ledger import STATE_NAMES
from studies.liveness import JobState
from studies.plan import Run

# The user attributes the table and the progress line read of a trial, all a database is asked
# for: the attempt's run key, number and label (studies.layout.Attempt), the table's job id, run
# folder and error, what tells whether a job lives (studies.liveness: its cluster, the owners'
# processes, the sacred heartbeat's folder) and a boundary probe's collapse verdict.
STATUS_ATTRS = ("run_key", "attempt", "label", "job_id", "run_dir", "error", "cluster", "sacred_dir", "worker_pid",
                *(f"{owner}_{what}" for owner in ("launcher", "job") for what in ("host", "pid", "pid_start")),
                "collapse")

STATES = ("done", "running", "pending", "failed", "missing")


@dataclass(frozen=True)
class RunStatus:
    run: Run
    attempts: Sequence[FrozenTrial]
    job: JobState | None = None  # what the latest attempt's job does, if its trial is RUNNING

    @property
    def latest(self) -> FrozenTrial | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def state(self) -> str:
        if self.latest is None:
            return "missing"
        if self.job is not None and self.latest.state == TrialState.RUNNING and self.job.state != "running":
            return "failed" if self.job.state == "dead" else "pending"
        return STATE_NAMES.get(self.latest.state, "failed")


def statuses(runs: Sequence[Run], attempts: dict[str, list[FrozenTrial]],
             jobs: Mapping[int, JobState] | None = None) -> list[RunStatus]:
    """Each run's row; ``jobs``: trial number -> its job's state, for RUNNING trials
    (``liveness.job_states``; without it every RUNNING trial counts as running)."""
    rows = []
    for run in runs:
        trials = attempts.get(run.key, [])
        rows.append(RunStatus(run, trials, (jobs or {}).get(trials[-1].number) if trials else None))
    return rows


def counts(rows: Sequence[RunStatus]) -> dict[str, int]:
    found = Counter(row.state for row in rows)
    return {state: found[state] for state in STATES}


def summary(rows: Sequence[RunStatus], tally: Mapping[str, int] | None = None) -> str:
    """"progress: 2/5 done, 1 running, 1 failed, 1 missing"; pending only when some are, so the
    line of a study with nothing queued reads as it always has."""
    tally = tally or counts(rows)
    shown = [s for s in STATES[1:] if s != "pending" or tally["pending"]]
    return f"progress: {tally['done']}/{len(rows)} done, " + ", ".join(f"{tally[s]} {s}" for s in shown)


def table(rows: Sequence[RunStatus], metric: str) -> str:
    header = ("run", "state", "attempt", metric, "paper", "job", "run folder / error / why it waits")
    lines = [header]
    for row in rows:
        trial = row.latest
        attrs = trial.user_attrs if trial else {}
        value = trial.value if trial is not None and trial.value is not None else None
        detail = {"failed": attrs.get("error") or (row.job.reason if row.job else ""),
                  "pending": row.job.reason if row.job else ""}.get(row.state, attrs.get("run_dir", ""))
        lines.append((row.run.label, row.state, str(attrs.get("attempt", "")), _number(value),
                      _number(row.run.paper), str(attrs.get("job_id", "")), str(detail or "")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1] for line in lines]
    return "\n".join(text + [summary(rows)])


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.2f}"
