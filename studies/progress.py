"""The line a launch that waits for its runs prints each time one ends: "progress: 3/8 done,
2 running, 3 pending, 0 failed, 0 missing, ETA 4 min".

The ETA comes from the finished runs' own training times (``wall_seconds`` of their latest
attempts, which count from the start of training, so a wait for a slot is not counted twice):
each running run needs the mean of those less what it has trained so far (``worker_since``),
each pending run needs the mean, and they are dealt out over the launch's slots, each to the slot
that frees first, as the local launcher starts them. Runs this launch will still start count as
pending, not missing. Without a finished run there is nothing to estimate from, and once none
runs or waits nothing to estimate: no ETA then.
"""
from __future__ import annotations

import heapq
import time
from typing import Collection, Sequence

from optuna.trial import TrialState

from studies import status


def eta_seconds(finished: Sequence[float], elapsed: Sequence[float], pending: int, slots: int) -> float | None:
    """Seconds until the last run ends: ``finished`` runs' training times, ``elapsed`` training
    time of each running run, ``pending`` runs not training yet, ``slots`` runs at a time."""
    if not finished:
        return None
    mean = sum(finished) / len(finished)
    free = [max(mean - e, 0.0) for e in elapsed] + [0.0] * max(slots - len(elapsed), 0)
    heapq.heapify(free)
    for _ in range(pending):
        heapq.heappush(free, heapq.heappop(free) + mean)
    return max(free, default=0.0)


def duration(seconds: float) -> str:
    """45 s, 12 min, 3 h 05 min."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def line(rows: Sequence[status.RunStatus], queued: Collection[str], slots: int, now: float | None = None) -> str:
    """The progress line of a launch; ``queued``: the keys of the runs it will still start."""
    now = time.time() if now is None else now
    tally = status.counts(rows)
    later = sum(r.state == "missing" and r.run.key in queued for r in rows)
    tally.update(pending=tally["pending"] + later, missing=tally["missing"] - later)
    finished = [float(r.latest.user_attrs["wall_seconds"]) for r in rows if r.state == "done"
                and r.latest.state == TrialState.COMPLETE and "wall_seconds" in r.latest.user_attrs]
    elapsed = [now - float(r.latest.user_attrs.get("worker_since", now)) for r in rows if r.state == "running"]
    eta = eta_seconds(finished, elapsed, tally["pending"], slots) if tally["running"] + tally["pending"] else None
    return status.summary(rows, tally) + (f", ETA {duration(eta)}" if eta is not None else "")
