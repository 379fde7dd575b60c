"""Claims (studies.attempts) on a real journal ledger, with the launchers' own settings: a SLURM
submission claims all its runs after one read of the ledger, a local launch reads it once per run
it claims, and a run that another launcher claimed meanwhile, or whose folder is in training, is
left to its owner."""
from __future__ import annotations

import os
from pathlib import Path

from studies import claims, run, status
from studies.attempts import Claimer
from studies.ledger import Ledger
from studies.liveness import this_host

AXES = [{"name": "m", "key": "loss.center_momentum", "values": [0.0, 0.5, 0.9, 0.95, 0.99, 0.999]}]


class CountingLedger(Ledger):
    """The real ledger, counting how often it reads every run's attempts."""

    reads = 0

    def attempts(self):
        self.reads += 1
        return super().attempts()


def invocation(write_study, tmp_path: Path, *options: str):
    """The validated invocation of a six-run study, its ledger, and each run's row as a launcher
    plans from (all missing)."""
    path = write_study("claimed", axes=AXES, set={"epochs": 1})
    ctx = run.context(run.parser().parse_args([str(path), "--results", str(tmp_path / "results"), *options]))
    ledger = CountingLedger.create(ctx.storage, ctx.study.name, ctx.study.direction, ctx.study.metric)
    rows = status.statuses(ctx.runs, ledger.attempts())
    ledger.reads = 0
    return ctx, ledger, rows


def test_a_slurm_submission_claims_its_runs_after_one_read_and_leaves_others_theirs(write_study, tmp_path, capsys):
    ctx, ledger, rows = invocation(write_study, tmp_path, "--cluster", "slurm")
    taken, held = rows[1].run, rows[2].run
    other = Ledger.load(ctx.storage, ctx.study.name)  # another launcher, after this one planned
    other.new_attempt({"run_key": taken.key, "attempt": 1, "run_dir": "elsewhere", "launcher_pid": 4242,
                       "launcher_host": "node7"})
    held_dir = ctx.results / "runs" / held.name
    with claims.training(held_dir):
        specs = Claimer(ctx, ledger, "reports.build:build_report").claim(rows)
    assert ledger.reads == 1
    out = capsys.readouterr().out
    assert f"[{taken.label}] left to its owner: attempt 1 was started meanwhile by launcher pid 4242 on node7" in out
    assert f"[{held.label}] left to its owner: {held_dir} is being trained by pid {os.getpid()} on {this_host()}" in out
    assert [s.label for s in specs] == [r.run.label for r in rows if r.run not in (taken, held)]
    attempts = Ledger.load(ctx.storage, ctx.study.name).attempts()
    keys = {r.run.label: r.run.key for r in rows}
    for spec in specs:
        (trial,) = attempts[keys[spec.label]]
        assert trial.number == spec.trial and trial.user_attrs["attempt"] == 1
        assert trial.user_attrs["cluster"] == "slurm" and trial.user_attrs["launcher_pid"] == os.getpid()
        assert spec.run_id == f"{trial.user_attrs['run_key']}-a1" and spec.run_dir == trial.user_attrs["run_dir"]
        # the launcher returns at once: the job shows its progress in its log, the last one writes the report
        assert spec.progress and spec.report_builder == "reports.build:build_report" and spec.slots == ()
    assert held.key not in attempts  # still missing


def test_a_local_launch_reads_the_ledger_once_per_run_it_claims(write_study, tmp_path):
    ctx, ledger, rows = invocation(write_study, tmp_path, "--cluster", "local", "--max-parallel", "2")
    claimer = Claimer(ctx, ledger, "reports.build:build_report")
    specs = [spec for row in rows[:3] for spec in claimer.claim([row])]
    assert ledger.reads == 3 and len(specs) == 3
    assert [r.state for r in status.statuses(ctx.runs, ledger.attempts())] == ["running"] * 3 + ["missing"] * 3
    slots = tuple(str(ctx.results / "submitit" / "slots" / f"slot-{i}.lock") for i in (0, 1))
    for spec in specs:  # the launcher waits, echoes its jobs' lines and writes the report itself
        assert spec.slots == slots and not spec.progress and spec.report_builder == ""
