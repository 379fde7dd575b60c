"""A study submitted as a real job array to the single-node SLURM of ../shared/slurm: results reach
the ledger and the run folders after the launcher has exited; a cancelled job is found dead through
sacct; a preempted job (USR2) checkpoints, is requeued by SLURM and resumes; a submission sbatch
refuses leaves its runs missing."""
from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from optuna.trial import TrialState

from studies import launchers, plan, spec, status
from studies.job import JobSpec
from studies.ledger import Ledger
from studies.run import main
from tests.helpers import (
    SLOW_EPOCHS,
    by_label,
    checkpoint_epoch,
    epoch_steps,
    sacred,
    trials,
    wait_for,
)

pytestmark = pytest.mark.slurm


def test_job_array_on_local_slurm(slurm_partition, write_study, tmp_path, capsys):
    path = write_study("array", axes=[{"name": "run", "values": [
        {"label": "a", "set": {"loss.center_momentum": 0.9, "epochs": 2}},
        {"label": "b", "set": {"loss.center_momentum": 0.95, "epochs": 2}},
        {"label": "preempted", "set": {"loss.center_momentum": 0.99, "epochs": 30, **SLOW_EPOCHS}},
        {"label": "cancelled", "set": {"loss.center_momentum": 0.999, "epochs": 100}},
    ]}], resources={"cpus_per_task": 1, "mem_gb": 2, "time_min": 10, "array_parallelism": 4})
    results = tmp_path / "results"
    argv = [str(path), "--results", str(results), "--cluster", "slurm", "--partition", slurm_partition]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "submitted 4 run(s)" in out and "--status" in out
    runs = {label: ts[0] for label, ts in by_label(results, "array").items()}
    (array_id,) = {t.user_attrs["job_id"].split("_")[0] for t in runs.values()}  # one job array
    assert sorted(t.user_attrs["job_id"].split("_")[1] for t in runs.values()) == ["0", "1", "2", "3"]

    cancelled = runs["run=cancelled seed=0"].user_attrs["job_id"]
    subprocess.run(["scancel", cancelled], check=True)
    preempted = runs["run=preempted seed=0"]
    wait_for(lambda: checkpoint_epoch(preempted.user_attrs["run_dir"]) >= 2, 180, "a checkpoint of 2 epochs")
    subprocess.run(["scancel", "--signal=USR2", preempted.user_attrs["job_id"]], check=True)

    def settled():
        main(argv)  # a rerun records the jobs it finds dead (--status only shows them), submits nothing
        return all(t.state != TrialState.RUNNING for t in trials(results, "array"))

    wait_for(settled, 300, "every job to end")
    status = capsys.readouterr().out
    assert f"SLURM job {cancelled} ended (" in status  # CANCELLED, or GONE if still pending
    runs = {label: ts[-1] for label, ts in by_label(results, "array").items()}
    assert runs["run=cancelled seed=0"].state == TrialState.FAIL
    for label in ("run=a seed=0", "run=b seed=0", "run=preempted seed=0"):
        trial = runs[label]
        assert trial.state == TrialState.COMPLETE and 0 < trial.value <= 100
        assert (Path(trial.user_attrs["run_dir"]) / "checkpoint.pth").is_file()
        info = sacred(trial, "info.json")
        assert info["slurm"]["SLURM_ARRAY_JOB_ID"] == array_id
        assert sacred(trial, "run.json")["status"] == "COMPLETED"
    info = sacred(runs["run=preempted seed=0"], "info.json")
    assert [s["status"] for s in info["segments"]] == ["REQUEUED", "COMPLETED"]
    assert info["slurm"]["SLURM_RESTART_COUNT"] == "1"
    steps = epoch_steps(runs["run=preempted seed=0"])
    assert steps.count(1) == 1 and sorted(set(steps)) == list(range(1, 31))

    def sacct() -> str:
        return subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", array_id],
                              capture_output=True, text=True, check=False).stdout

    wait_for(lambda: sacct().count("COMPLETED") == 3, 60, "SLURM to record three completed tasks")
    assert json.loads((results / "study.json").read_text())["cluster"] == "slurm"


def test_refused_submission_is_one_line_and_its_runs_stay_missing(slurm_partition, write_study, tmp_path, capsys):
    path = write_study("refused", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9, 0.99]}])
    study = spec.load(str(path))
    runs = plan.expand(study, "tiny")
    results = tmp_path / "results"
    storage = str(results / "ledger.journal")
    ledger = Ledger.create(storage, study.name, study.direction, study.metric)
    specs = [JobSpec(study=study.name, storage=storage, trial=ledger.new_attempt({"run_key": run.key, "attempt": 1}),
                     run_id=f"{run.key}-a1", label=run.label, metric=study.metric, config=run.config.to_dict(),
                     run_dir=str(results / "runs" / run.name), sacred_root=str(results / "sacred"), observers={},
                     threads=1) for run in runs]
    assert [r.state for r in status.statuses(runs, ledger.attempts())] == ["running", "running"]
    refused = dataclasses.replace(study.resources("tiny"), partition="no_such_partition")
    slurm = launchers.Slurm()
    executor = slurm.executor(results / "submitit", refused, study.name)
    with pytest.raises(launchers.SubmitError) as error:
        slurm.submit(executor, specs)
    message = str(error.value)  # sbatch's own words, once, on one line
    assert message.startswith("sbatch: error: ") and "no_such_partition" in message and "\n" not in message
    assert error.value.jobs == [] and capsys.readouterr().err == ""
    ledger = Ledger.load(storage, study.name)
    assert [r.state for r in status.statuses(runs, ledger.attempts())] == ["missing", "missing"]
    assert all(t.state == TrialState.FAIL and t.user_attrs["error"] == f"not submitted: {message}"
               for t in ledger.trials())  # on record for the dashboard, attempts of no run


def test_held_jobs_show_as_pending_with_squeues_reason(slurm_partition, write_study, tmp_path, capsys):
    """Jobs submitted held (``sbatch --hold``) wait in the queue until released: pending, with
    squeue's reason, neither running nor failed, and a relaunch leaves them be."""
    path = write_study("held", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9, 0.99]}],
                       resources={"cpus_per_task": 1, "mem_gb": 2, "time_min": 10, "sbatch": {"hold": True}})
    results = tmp_path / "results"
    argv = [str(path), "--results", str(results), "--cluster", "slurm", "--partition", slurm_partition]
    assert main(argv) == 0
    capsys.readouterr()
    job_ids = [t.user_attrs["job_id"] for t in trials(results, "held")]
    try:
        assert main(argv + ["--status"]) == 0
        out = capsys.readouterr().out
        rows = [line for line in out.splitlines() if line.startswith("m=")]
        assert len(rows) == 2 and all(" pending " in row and row.endswith("PENDING (JobHeldUser)") for row in rows)
        assert "progress: 0/2 done, 0 running, 2 pending, 0 failed, 0 missing" in out
        assert main(argv) == 0
        assert "nothing to submit (progress: 0/2 done, 0 running, 2 pending, 0 failed, 0 missing)" in \
            capsys.readouterr().out
        assert all(t.state == TrialState.RUNNING for t in trials(results, "held"))
    finally:
        subprocess.run(["scancel", *job_ids], check=True)

    def failed() -> bool:
        main(argv + ["--status"])
        return "0/2 done, 0 running, 2 failed" in capsys.readouterr().out
    wait_for(failed, 60, "the cancelled jobs to show as failed")
