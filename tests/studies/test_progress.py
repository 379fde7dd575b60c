"""What a person watching a study sees: a progress line with an ETA each time a run ends, each run
"started" once, when it really starts training, and runs that wait shown as pending."""
from __future__ import annotations

import os
import re

import optuna
from optuna.trial import TrialState

from studies import liveness, progress
from studies.run import main


def test_eta_deals_the_remaining_runs_over_the_slots():
    # mean of the finished runs 15 s; slots free at 15 - 5 = 10 s (running) and at once (idle);
    # three pending runs of 15 s go to the slot that frees first: at 0 -> 15, at 10 -> 25, at 15 -> 30
    assert progress.eta_seconds([10, 20], [5], pending=3, slots=2) == 30
    assert progress.eta_seconds([10, 20], [40], pending=0, slots=1) == 0  # over the mean: ends any moment
    assert progress.eta_seconds([60], [], pending=4, slots=2) == 120
    assert progress.eta_seconds([], [5], pending=3, slots=2) is None  # nothing finished to estimate from
    assert [progress.duration(s) for s in (45, 600, 3900)] == ["45 s", "10 min", "1 h 05 min"]


def test_a_local_launch_says_started_once_per_run_and_prints_progress_as_runs_end(write_study, tmp_path, capsys):
    path = write_study("progress", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.0, 0.9, 0.99]}],
                       set={"epochs": 1})
    assert main([str(path), "--results", str(tmp_path / "results"), "--max-parallel", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    labels = [f"m={m} seed=0" for m in ("0", "0.9", "0.99")]
    for label in labels:
        started = [i for i, line in enumerate(lines) if line.startswith(f"[{label}] started: training in ")]
        done = [i for i, line in enumerate(lines) if line.startswith(f"[{label}] done: knn_top1 = ")]
        submitted = [i for i, line in enumerate(lines) if line.startswith(f"[{label}] submitted: job ")]
        assert len(started) == len(done) == len(submitted) == 1 and submitted[0] < started[0] < done[0], label
    assert not [line for line in lines if any(line.count(label) > 1 for label in labels)]  # each label once
    pattern = re.compile(r"progress: (\d)/3 done, (\d) running(?:, (\d) pending)?, 0 failed, 0 missing(, ETA .+)?$")
    after_each_end = [lines[i + 1] for i, line in enumerate(lines) if "] done: knn_top1 = " in line]
    found = [pattern.match(line) for line in after_each_end]
    assert len(found) == 3 and all(found), after_each_end
    # counted from the ledger, which may be ahead of the launcher's poll (a micro run can end
    # between two polls): never backwards, every run done, running or pending, never missing
    done = [int(m[1]) for m in found]
    assert done == sorted(done) and done[-1] == 3
    assert all(int(m[1]) + int(m[2]) + int(m[3] or 0) == 3 for m in found)
    assert [bool(m[4]) for m in found] == [d < 3 for d in done]  # an ETA while runs remain


def running(**attrs) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs=attrs)


def job_state(trial: optuna.trial.FrozenTrial) -> liveness.JobState:
    (state,) = liveness.job_states([trial]).values()
    return state


def test_a_live_local_job_is_pending_until_its_worker_trains():
    """A job process that is alive (this one) but has not told the trial it trains is pending."""
    job = {"job_id": str(os.getpid()), "cluster": "local", **liveness.owner_attrs("job", os.getpid())}
    waiting, training = running(**job), running(**job, **liveness.owner_attrs("worker", os.getpid()))
    assert [job_state(t) for t in (waiting, training)] == [
        liveness.JobState("pending", "starting up, or waiting for a slot"), liveness.JobState("running")]
    submitting = running(**liveness.owner_attrs("launcher", os.getpid()))  # its trial made, no job yet
    assert job_state(submitting) == liveness.JobState("pending", "being submitted")
