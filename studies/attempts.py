"""A launcher's claim on runs: each run's next attempt created in the ledger, and the spec of the
job that runs it.

A claim rereads the runs' attempts under the study's launch lock (``claims.launching``), so that
checking that a run is still as the launcher planned it and creating its attempt are one step: a
run that another launcher started meanwhile, or whose folder is in training (``claims.holder``),
is left to its owner, said in one line. The SLURM launcher claims a whole submission in one claim:
one lock and one read of the ledger, then one new trial per run (claiming its runs one by one,
a 10,000-run study read all its trials 10,000 times). The local and debug launchers claim each
run just before its job starts, so runs never started stay missing if the launcher is stopped;
there each claim reads the ledger once, which is what seeing the other launchers' claims takes.
A retry reuses the run folder of the earlier attempts, so the trainer resumes from it.
"""
from __future__ import annotations

import os
from typing import Sequence

from optuna.trial import FrozenTrial

from studies import claims, liveness
from studies.job import JobSpec
from studies.layout import Attempt, Layout
from studies.ledger import Ledger
from studies.status import RunStatus


class Claimer:
    """Claims runs of the invocation ``ctx`` (a ``studies.run.Context``) in ``ledger``.
    ``report_builder``: the ``"module:function"`` that builds the study's report, handed to the
    jobs of a launcher that does not wait for them (the last of them writes it)."""

    def __init__(self, ctx, ledger: Ledger, report_builder: str):
        self.ctx, self.ledger, self.layout = ctx, ledger, Layout(ctx.results)
        self.slots = ctx.launcher.slot_files(self.layout.slots)
        self.report_builder = "" if ctx.launcher.waits else report_builder

    def claim(self, rows: Sequence[RunStatus]) -> list[JobSpec]:
        """Claim the runs of ``rows`` under one launch lock and one read of the ledger (a whole SLURM
        submission, or one local run as its process starts); the specs of the jobs of those still
        as their row found them, in order."""
        with claims.launching(self.ctx.results):
            attempts = self.ledger.attempts()
            return [spec for row in rows if (spec := self._claim(row, attempts.get(row.run.key, [])))]

    def _claim(self, row: RunStatus, attempts: Sequence[FrozenTrial]) -> JobSpec | None:
        """``row``'s run's next attempt and its job's spec, given the run's ``attempts`` as the
        ledger holds them now; None, said in one line, if the run is left to another owner."""
        ctx, run = self.ctx, row.run
        latest = attempts[-1] if attempts else None
        if latest is not None and latest.number != (row.latest.number if row.latest else None):
            owner = latest.user_attrs
            print(f"[{run.label}] left to its owner: attempt {owner.get('attempt')} was started meanwhile by "
                  f"launcher pid {owner.get('launcher_pid')} on {owner.get('launcher_host')}", flush=True)
            return None
        run_dir = Attempt.of(latest).run_dir if latest else str(self.layout.run_dir(run.name))
        trainer = claims.holder(run_dir)
        if trainer:
            print(f"[{run.label}] left to its owner: {run_dir} is being trained by {trainer}", flush=True)
            return None
        attempt = 1 + max((Attempt.of(t).attempt for t in attempts), default=0)
        run_id = f"{run.key}-a{attempt}"
        recorded = Attempt(run_key=run.key, run_id=run_id, attempt=attempt, label=run.label, axes=dict(run.axes),
                           seed=run.seed, paper=run.paper, profile=ctx.profile, cluster=ctx.cluster,
                           results_dir=str(ctx.results), run_dir=run_dir,
                           sacred_dir=str(self.layout.sacred_run(run_id)))
        number = self.ledger.new_attempt({**recorded.attrs(), **liveness.owner_attrs("launcher", os.getpid())},
                                         study=ctx.study, profile=ctx.profile, run=run)
        return JobSpec(study=ctx.study.name, storage=ctx.storage, trial=number, run_id=run_id, label=run.label,
                       metric=ctx.study.metric, config=run.config.to_dict(), run_dir=run_dir,
                       sacred_root=str(self.layout.sacred), observers=ctx.observers,
                       threads=ctx.resources.cpus_per_task, slots=self.slots, report_builder=self.report_builder,
                       progress=not ctx.launcher.waits)
