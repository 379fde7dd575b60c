"""Which RUNNING trials have a dead job: real processes and real heartbeat files, no training."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from studies import liveness


def running(**attrs) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs=attrs)


def dead(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[optuna.trial.FrozenTrial, str]]:
    """What a launch marks failed: each trial whose job is found dead, with the reason, in order."""
    for number, trial in enumerate(trials):
        trial.number = number  # job_states answers by trial number, as the ledger numbers them
    states = liveness.job_states(trials)
    return [(t, states[t.number].reason) for t in trials if t.number in states and states[t.number].state == "dead"]


def ended_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_process_owners():
    me = liveness.owner_attrs("launcher", os.getpid())
    gone = liveness.owner_attrs("launcher", ended_pid())
    assert me["launcher_pid_start"] and gone["launcher_pid_start"] is None
    reused = {**me, "launcher_pid_start": "1"}  # same pid, another process: not ours
    verdicts = dead([running(**me), running(**gone), running(**reused)])
    assert [t.user_attrs for t, _ in verdicts] == [gone, reused]
    assert all("launcher stopped before the job was submitted" in reason for _, reason in verdicts)

    job = {"job_id": "123", "cluster": "local", **liveness.owner_attrs("job", os.getpid())}
    dead_job = {"job_id": "124", "cluster": "local", **liveness.owner_attrs("job", ended_pid())}
    (verdict,) = dead([running(**job), running(**dead_job)])
    assert verdict[0].user_attrs["job_id"] == "124" and "its process is gone" in verdict[1]


def test_heartbeat_decides_where_the_owner_cannot_be_asked(tmp_path):
    """A local job on another host: alive while sacred rewrites run.json, dead once it stops."""
    beat = tmp_path / "run.json"
    beat.write_text(json.dumps({"status": "RUNNING"}))
    elsewhere = {"job_id": "7", "cluster": "local", "job_host": "another-host", "job_pid": 1,
                 "job_pid_start": "1", "sacred_dir": str(tmp_path)}
    assert dead([running(**elsewhere)]) == []
    old = time.time() - liveness.STALE_HEARTBEAT_S - 60
    os.utime(beat, (old, old))
    (verdict,) = dead([running(**elsewhere)])
    assert "stopped its heartbeat 31 min ago" in verdict[1]
    started_nowhere = {**elsewhere, "sacred_dir": str(tmp_path / "never")}  # cannot tell: keep it
    assert dead([running(**started_nowhere)]) == []


def test_finished_trials_are_never_dead():
    done = optuna.trial.create_trial(state=TrialState.COMPLETE, value=1.0,
                                     user_attrs={"job_id": "1", "cluster": "local", "job_pid": 1})
    assert dead([done]) == []
