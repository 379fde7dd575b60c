"""Is the job behind a RUNNING trial still alive?

The journal storage has no heartbeat, so a job killed by SIGKILL, a lost node or a time limit
without requeue leaves its trial RUNNING forever. Each trial records who owns it: the launcher
until the job is submitted, then the job (a local process, identified by host, pid and the pid's
start time so a reused pid is not mistaken for it; or a SLURM job id, asked of ``sacct``). Where
neither can be asked (another host, no accounting) the run's sacred heartbeat decides: ``run.json``
is rewritten every 10 s while the job runs. A job is declared dead only on positive evidence;
"cannot tell" keeps the trial RUNNING.

A live job is *pending* until it trains: a SLURM job that squeue lists as waiting (with squeue's
reason: Priority, Resources, Dependency, JobHeldUser, BeginTime after a requeue), or a local job
still starting up or waiting for a slot; it is *running* once its worker has told the trial
(``worker_*`` attributes, written when training starts). A requeued SLURM job keeps its old
worker attributes, so there squeue decides.
"""
from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from optuna.trial import FrozenTrial, TrialState
from submitit.slurm.slurm import SlurmInfoWatcher

STALE_HEARTBEAT_S = 30 * 60
# sacct states after which a job will not run again (REQUEUED and PENDING will).
SLURM_ENDED = ("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "GONE", "NODE_FAIL",
               "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "TIMEOUT")
# squeue states of a job that will run but does not now.
SLURM_WAITING = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED")


@dataclass(frozen=True)
class JobState:
    """What the job behind a RUNNING trial is doing: ``dead`` (with why), ``pending`` (with
    squeue's reason, or why a local job has not started training) or ``running``."""

    state: str
    reason: str = ""


def this_host() -> str:
    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None if
    there is no such process or it has exited (a zombie waiting for its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3, start field 22
    return None if fields[0] in ("Z", "X") else fields[19]


def owner_attrs(prefix: str, pid: int) -> dict[str, str | int | None]:
    """Attributes identifying a local process: ``<prefix>_host``, ``_pid``, ``_pid_start``, and
    ``_since`` (epoch seconds): for the worker, when training started, which the launcher's ETA
    needs."""
    return {f"{prefix}_host": this_host(), f"{prefix}_pid": pid, f"{prefix}_pid_start": process_start(pid),
            f"{prefix}_since": time.time()}


def job_states(trials: Iterable[FrozenTrial]) -> dict[int, JobState]:
    """Trial number -> the state of its job, for every RUNNING trial (one squeue and at most one
    sacct call for all the SLURM ones)."""
    running = [t for t in trials if t.state == TrialState.RUNNING]
    slurm_ids = {t.user_attrs["job_id"] for t in running
                 if t.user_attrs.get("cluster") == "slurm" and t.user_attrs.get("job_id")}
    states = slurm_states(slurm_ids) if slurm_ids else {}
    return {trial.number: _verdict(trial.user_attrs, states) for trial in running}


def _verdict(attrs: dict, slurm: dict[str, str] | None) -> JobState:
    job_id = attrs.get("job_id")
    waiting = JobState("pending", "starting up, or waiting for a slot")
    started = JobState("running") if "worker_pid" in attrs else waiting
    if not job_id:
        if _process_alive(attrs, "launcher") is False:
            return JobState("dead", "the launcher stopped before the job was submitted")
        return JobState("pending", "being submitted")
    if attrs.get("cluster") in ("local", "debug"):
        alive = _process_alive(attrs, "job")
        if alive is False:
            return JobState("dead", f"job {job_id} ended without reporting (its process is gone: killed or crashed)")
        if alive:
            return started
    elif slurm is not None and job_id in slurm:
        state = slurm[job_id]
        name = state.split()[0]
        if name in SLURM_ENDED:
            return JobState("dead", f"SLURM job {job_id} ended ({state}) without reporting")
        if name in SLURM_WAITING:
            return JobState("pending", state)
        return JobState("running")
    stale = _stale_heartbeat(attrs)
    return JobState("dead", stale) if stale else started


def _process_alive(attrs: dict, prefix: str) -> bool | None:
    """True/False for a process on this host; None when it ran elsewhere."""
    if attrs.get(f"{prefix}_host") != this_host() or attrs.get(f"{prefix}_pid") is None:
        return None
    start = process_start(int(attrs[f"{prefix}_pid"]))
    return start is not None and start == attrs.get(f"{prefix}_pid_start")


def _stale_heartbeat(attrs: dict) -> str | None:
    beat = Path(attrs.get("sacred_dir", "")) / "run.json"
    if beat.is_file() and time.time() - beat.stat().st_mtime > STALE_HEARTBEAT_S:
        minutes = (time.time() - beat.stat().st_mtime) / 60
        return f"job {attrs.get('job_id')} stopped its heartbeat {minutes:.0f} min ago ({beat})"
    return None


def slurm_states(job_ids: Iterable[str]) -> dict[str, str] | None:
    """Job id ("123" or "123_4") -> its SLURM state, a waiting one with squeue's reason
    ("PENDING (Dependency)"); None where neither squeue nor sacct can answer.

    squeue knows the jobs that are queued or running, and why a queued one waits; sacct knows
    every job that started, also after it ended. An array task cancelled while pending never
    gets a record, so an id that neither lists is reported as GONE.
    """
    job_ids = set(job_ids)
    bases = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    queued = _slurm(["squeue", "-h", "-r", "-o", "%i %T %r", "-j", bases])
    states: dict[str, str] = {}
    for line in (queued or "").splitlines():
        job, state, reason = (line.split(maxsplit=2) + ["", ""])[:3]
        if job in job_ids:
            states[job] = f"{state} ({reason})" if state in SLURM_WAITING and reason else state
    missing = job_ids - set(states)
    if not missing:
        return states
    sacct = _slurm(["sacct", "-o", "JobID,State", "--parsable2", "-j", bases])
    if sacct is None:
        return states if queued is not None else None
    states.update({job: info["State"] for job, info in SlurmInfoWatcher().read_info(sacct).items() if job in missing})
    if queued is not None:
        states.update({job: "GONE (unknown to sacct and squeue)" for job in job_ids - set(states)})
    return states


def _slurm(command: list[str]) -> str | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
