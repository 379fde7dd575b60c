"""Whole studies through submitit's local executor: real trainings (seconds each), a real optuna
ledger, real sacred records, real signals."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from studies.ledger import open_storage
from studies.liveness import process_start
from studies.run import main
from tests.helpers import REPO, SLOW_EPOCHS, by_label, checkpoint_epoch, epoch_steps, launcher, running_with_checkpoint, sacred, \
    trials, wait_for


def test_local_study_runs_records_skips_and_retries_only_failures(write_study, tmp_path, capsys):
    path = write_study("micro", axes=[{"name": "run", "values": [
        {"label": "m0.9", "set": {"loss.center_momentum": 0.9}},
        {"label": "m0.99", "set": {"loss.center_momentum": 0.99}},
        {"label": "diverges", "set": {"optim.lr": 1e6}},  # the loss is NaN at once
    ]}], set={"epochs": 2}, metric="knn_top1")
    results = tmp_path / "results"
    code = main([str(path), "--results", str(results), "--max-parallel", "2"])
    out = capsys.readouterr().out
    assert code == 1  # one run failed
    assert "[run=m0.9 seed=0] epoch 2/2" in out and f"results: {results}" in out
    assert "[run=diverges seed=0] FAILED: NonFiniteLossError" in out

    runs = by_label(results, "micro")
    assert {label: [t.state for t in ts] for label, ts in runs.items()} == {
        "run=m0.9 seed=0": [TrialState.COMPLETE], "run=m0.99 seed=0": [TrialState.COMPLETE],
        "run=diverges seed=0": [TrialState.FAIL]}
    failed = runs["run=diverges seed=0"][0]
    assert failed.user_attrs["error"].startswith("NonFiniteLossError: loss is nan")
    assert sacred(failed, "run.json")["status"] == "FAILED"
    for label in ("run=m0.9 seed=0", "run=m0.99 seed=0"):
        trial = runs[label][0]
        attrs = trial.user_attrs
        assert 0 < trial.value <= 100 and trial.value == attrs["knn_top1"]
        assert attrs["attempt"] == 1 and attrs["cluster"] == "local" and attrs["seed"] == 0
        assert attrs["job_pid"] == int(attrs["job_id"])  # a local job is a process, which liveness asks after
        assert attrs["run_id"] == f"{attrs['run_key']}-a1" and Path(attrs["sacred_dir"]).name == attrs["run_id"]
        assert (Path(attrs["run_dir"]) / "checkpoint.pth").is_file()
        assert trial.intermediate_values == {2: trial.value}
        record = sacred(trial, "run.json")
        assert record["status"] == "COMPLETED" and record["result"]["knn_top1"] == trial.value
        assert record["meta"]["options"]["--id"] == attrs["run_id"]
        assert record["result"]["gpu_hours"] == 0 and record["result"]["cpu_hours"] > 0
        if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, check=False).returncode == 0:
            assert record["experiment"]["repositories"][0]["commit"]
        config = sacred(trial, "config.json")
        assert config["dino"]["epochs"] == 2 and config["study"]["run_id"] == attrs["run_id"]
        metrics = sacred(trial, "metrics.json")
        assert metrics["epoch.loss"]["steps"] == [1, 2] and metrics["knn.top1"]["values"] == [trial.value]
        assert len(metrics["iteration.target_entropy"]["steps"]) == 2 * 2  # log_every = 1, 2 iterations/epoch
        info = sacred(trial, "info.json")
        assert info["versions"]["torch"] == torch.__version__ and info["segments"][0]["status"] == "COMPLETED"
        assert info["wall_seconds"] > 0 and info["gpu_hours"] == 0
    assert json.loads((results / "study.json").read_text())["runs"][0]["label"] == "run=m0.9 seed=0"
    ledger = optuna.load_study(study_name="micro", storage=open_storage(str(results / "ledger.journal")))
    assert ledger.metric_names == ["knn_top1"]  # optuna-dashboard's name for the objective

    # A second invocation submits nothing.
    assert main([str(path), "--results", str(results)]) == 0
    assert "nothing to submit (progress: 2/3 done, 0 running, 1 failed, 0 missing)" in capsys.readouterr().out
    assert len(trials(results, "micro")) == 3
    assert main([str(path), "--results", str(results), "--status"]) == 0
    assert "diverges seed=0  failed" in capsys.readouterr().out

    # --retry-failed reruns exactly the failed run, as attempt 2 in the same run folder.
    assert main([str(path), "--results", str(results), "--retry-failed"]) == 1
    capsys.readouterr()
    runs = by_label(results, "micro")
    assert [len(ts) for ts in runs.values()] == [1, 1, 2]
    first, second = runs["run=diverges seed=0"]
    assert second.user_attrs["attempt"] == 2 and second.state == TrialState.FAIL
    assert second.user_attrs["run_dir"] == first.user_attrs["run_dir"]
    assert second.user_attrs["run_id"] == f"{first.user_attrs['run_key']}-a2"


def test_next_run_starts_up_while_one_trains_but_never_trains_alongside(write_study, tmp_path, capsys):
    """--max-parallel 1: the second run's process is started (its trial created) while the first
    run trains, and waits for the slot; no two runs ever train at the same time. (Later runs
    start when the launcher sees a run end, which micro runs may outpace.)"""
    path = write_study("standby", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.0, 0.9, 0.99]}],
                       set={"epochs": 2})
    results = tmp_path / "results"
    assert main([str(path), "--results", str(results), "--max-parallel", "1"]) == 0
    capsys.readouterr()
    runs = sorted(trials(results, "standby"), key=lambda t: t.number)
    assert [t.state for t in runs] == [TrialState.COMPLETE] * 3

    def utc(iso: str) -> datetime:
        return datetime.fromisoformat(iso).replace(tzinfo=timezone.utc)
    # in the order they trained, which need not be the trials' order: a run that starts up later
    # may reach the slot first on a loaded machine
    spans = sorted((utc(sacred(t, "run.json")["start_time"]), utc(sacred(t, "run.json")["stop_time"])) for t in runs)
    assert runs[1].datetime_start.astimezone(timezone.utc) < spans[0][1]  # started up during the first training
    for (_, stop), (start, _) in zip(spans, spans[1:]):
        assert start >= stop  # but trained only once the previous run had ended


def test_killed_runs_are_marked_failed_and_resume_on_retry(write_study, tmp_path, capsys):
    """SIGKILL a run's process while the launcher watches (the launcher notices), and another
    after killing the launcher too (the next ``--status`` notices); retries resume both."""
    path = write_study("killed", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9, 0.95]}],
                       set={"epochs": 20, **SLOW_EPOCHS})
    results = tmp_path / "results"
    proc = launcher(path, "--results", results, "--max-parallel", "2")
    try:
        first, second = wait_for(lambda: running_with_checkpoint(results, "killed", 2, 2), 120,
                                 "both runs to checkpoint 2 epochs")
        # Freeze the second run first: on a fast machine it would otherwise finish all its epochs
        # while the launcher notices the first death.
        os.kill(second.user_attrs["worker_pid"], signal.SIGSTOP)
        os.kill(first.user_attrs["worker_pid"], signal.SIGKILL)
        wait_for(lambda: by_label(results, "killed")[first.user_attrs["label"]][-1].state == TrialState.FAIL,
                 30, "the launcher to mark the killed run failed")
        os.kill(proc.pid, signal.SIGKILL)
        os.kill(second.user_attrs["worker_pid"], signal.SIGKILL)
        wait_for(lambda: process_start(second.user_attrs["job_pid"]) is None, 30, "the job to end")
    finally:
        proc.kill()
        out = proc.communicate()[0]
    assert "ended without reporting" in out
    assert main([str(path), "--results", str(results), "--status"]) == 0
    status = capsys.readouterr().out
    assert f"marked failed: {second.user_attrs['label']}" in status and "its process is gone" in status
    assert "0/2 done, 0 running, 2 failed" in status

    killed_at = {t.user_attrs["label"]: checkpoint_epoch(t.user_attrs["run_dir"]) for t in (first, second)}
    assert main([str(path), "--results", str(results), "--retry-failed", "--max-parallel", "2"]) == 0
    capsys.readouterr()
    for label, (old, new) in by_label(results, "killed").items():
        assert old.state == TrialState.FAIL and new.state == TrialState.COMPLETE
        assert new.user_attrs["attempt"] == 2 and new.user_attrs["run_dir"] == old.user_attrs["run_dir"]
        assert killed_at[label] >= 2 and epoch_steps(new) == list(range(1, 21))  # the first ones carried over
        iterations = sacred(new, "metrics.json")["iteration.loss"]["steps"]
        assert iterations[0] == killed_at[label] * 16  # resumed from the checkpoint, not from scratch


def test_requeue_on_simulated_timeout_resumes_from_the_checkpoint(write_study, tmp_path):
    """submitit's local controller signals a job USR2 when its time is nearly up (timeout_min*60 -
    signal_delay_s); the job checkpoints, exits 144 and the controller restarts it. The test sends
    that same signal once the run has a checkpoint, instead of waiting for the clock; with
    time_min = 5 submitit counts it as a time-out."""
    path = write_study("requeue", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9]}],
                       set={"epochs": 12, **SLOW_EPOCHS}, resources={"time_min": 5, "signal_delay_s": 30})
    results = tmp_path / "results"
    extra = tmp_path / "extra_observer"
    proc = launcher(path, "--results", results, "--observer", f"file_storage={extra}")
    try:
        (trial,) = wait_for(lambda: running_with_checkpoint(results, "requeue", 1, 2), 120,
                            "the run to checkpoint 2 epochs")
        os.kill(trial.user_attrs["worker_pid"], signal.SIGUSR2)
        out = proc.communicate(timeout=240)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "this job is timed-out" in out
    (done,) = trials(results, "requeue")  # the same attempt: no new trial
    assert done.state == TrialState.COMPLETE and done.user_attrs["attempt"] == 1
    assert done.user_attrs["worker_pid"] != trial.user_attrs["worker_pid"]  # a new process after requeue
    info = sacred(done, "info.json")
    run_id = done.user_attrs["run_id"]
    assert [(s["id"], s["status"]) for s in info["segments"]] == [(run_id, "REQUEUED"), (f"{run_id}.r1", "COMPLETED")]
    assert info["wall_seconds"] == pytest.approx(sum(s["seconds"] for s in info["segments"]))
    steps = epoch_steps(done)
    assert steps.count(1) == 1 and sorted(set(steps)) == list(range(1, 13))  # resumed, not restarted
    assert sacred(done, "run.json")["status"] == "COMPLETED"
    assert sorted(p.name for p in extra.iterdir() if p.name != "_sources") == [run_id, f"{run_id}.r1"]


def signal_children(pid: int, signum: int) -> int:
    """Send ``signum`` to the child processes of ``pid``; how many got it (a DataLoader worker
    may end with its epoch between being listed and being signalled)."""
    try:
        pids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return 0
    hit = 0
    for child in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)
            hit += 1
    return hit


def test_a_data_loading_worker_signalled_to_requeue_leaves_it_to_its_job(write_study, tmp_path):
    """SLURM sends its requeue signal to every process of a job, and a DataLoader worker inherits
    the job's handler of it: the worker must not checkpoint, requeue or exit (which failed the
    run); only the job's own process answers. Signalled alone, the workers change nothing."""
    path = write_study("workers", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9]}],
                       set={"epochs": 6, "data.num_workers": 2, **SLOW_EPOCHS})
    results = tmp_path / "results"
    proc = launcher(path, "--results", results)
    try:
        (trial,) = wait_for(lambda: running_with_checkpoint(results, "workers", 1, 1), 120, "the run to train")
        wait_for(lambda: signal_children(trial.user_attrs["worker_pid"], signal.SIGUSR2), 60,
                 "its data-loading workers")
        out = proc.communicate(timeout=240)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "this job is" not in out  # no process took the signal for a preemption or a time-out
    (done,) = trials(results, "workers")
    assert done.state == TrialState.COMPLETE and done.user_attrs["worker_pid"] == trial.user_attrs["worker_pid"]
    assert [s["status"] for s in sacred(done, "info.json")["segments"]] == ["COMPLETED"]


def test_debug_cluster_runs_in_process_with_an_sql_ledger(write_study, tmp_path, capsys):
    path = write_study("debug", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9]}],
                       set={"epochs": 1})
    storage = f"sqlite:///{tmp_path / 'ledger.db'}"
    argv = [str(path), "--results", str(tmp_path / "results"), "--cluster", "debug", "--storage", storage]
    assert main(argv) == 0
    (trial,) = optuna.load_study(study_name="debug", storage=storage).trials
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["job_id"].startswith("DEBUG_")
    assert trial.user_attrs["worker_pid"] == os.getpid()  # the debug executor runs jobs in-process
    assert trial.user_attrs["job_pid"] == os.getpid()
    assert sacred(trial, "run.json")["status"] == "COMPLETED"
    capsys.readouterr()
    assert main(argv + ["--status"]) == 0 and "1/1 done" in capsys.readouterr().out


def test_a_local_dry_run_says_how_many_runs_train_at_once_and_shows_no_sbatch_script(write_study, tmp_path, capsys):
    path = write_study("dry", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9, 0.99]}])
    assert main([str(path), "--results", str(tmp_path / "results"), "--dry-run", "--max-parallel", "3"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "local: at most 3 run(s) at once, on this machine" and "#SBATCH" not in out
    assert not (tmp_path / "results").exists()
