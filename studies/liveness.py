"""Is the job behind a RUNNING trial still alive?

The journal storage has no heartbeat, so a job killed by SIGKILL, a lost node or a time limit
without requeue leaves its trial RUNNING forever. Each trial records who owns it: the launcher
until the job is submitted, then the job (a local process, identified by host, pid and the pid's
start time so a reused pid is not mistaken for it; or a SLURM job id, asked of ``sacct``). Where
neither can be asked (another host, no accounting) the run's sacred heartbeat decides: ``run.json``
is rewritten every 10 s while the job runs. A job is declared dead only on positive evidence;
"cannot tell" keeps the trial RUNNING.
"""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable

from optuna.trial import FrozenTrial, TrialState
from submitit.slurm.slurm import SlurmInfoWatcher

STALE_HEARTBEAT_S = 30 * 60
# sacct states after which a job will not run again (REQUEUED and PENDING will).
SLURM_ENDED = ("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "GONE", "NODE_FAIL",
               "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "TIMEOUT")


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
    """Attributes identifying a local process: ``<prefix>_host``, ``_pid``, ``_pid_start``."""
    return {f"{prefix}_host": this_host(), f"{prefix}_pid": pid, f"{prefix}_pid_start": process_start(pid)}


def dead_trials(trials: Iterable[FrozenTrial]) -> list[tuple[FrozenTrial, str]]:
    """The RUNNING trials whose job is certainly gone, each with a one-line reason."""
    running = [t for t in trials if t.state == TrialState.RUNNING]
    slurm_ids = {t.user_attrs["job_id"] for t in running
                 if t.user_attrs.get("cluster") == "slurm" and t.user_attrs.get("job_id")}
    states = slurm_states(slurm_ids) if slurm_ids else {}
    dead = []
    for trial in running:
        reason = _verdict(trial.user_attrs, states)
        if reason:
            dead.append((trial, reason))
    return dead


def _verdict(attrs: dict, slurm: dict[str, str] | None) -> str | None:
    job_id = attrs.get("job_id")
    if not job_id:
        if _process_alive(attrs, "launcher") is False:
            return "the launcher stopped before the job was submitted"
        return None
    if attrs.get("cluster") in ("local", "debug"):
        alive = _process_alive(attrs, "job")
        if alive is False:
            return f"job {job_id} ended without reporting (its process is gone: killed or crashed)"
        if alive:
            return None
    elif slurm is not None and job_id in slurm:
        state = slurm[job_id]
        if state.split()[0] in SLURM_ENDED:
            return f"SLURM job {job_id} ended ({state}) without reporting"
        return None
    return _stale_heartbeat(attrs)


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
    """Job id ("123" or "123_4") -> its SLURM state; None where sacct cannot answer.

    sacct knows every job that started; an array task cancelled while pending never gets a
    record, so an id unknown to sacct that squeue does not list either is reported as GONE.
    """
    job_ids = set(job_ids)
    bases = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    sacct = _slurm(["sacct", "-o", "JobID,State", "--parsable2", "-j", bases])
    if sacct is None:
        return None
    states = {job: info["State"] for job, info in SlurmInfoWatcher().read_info(sacct).items()}
    missing = job_ids - set(states)
    queued = _slurm(["squeue", "-h", "-r", "-o", "%i %T", "-j", bases]) if missing else ""
    if queued is None:
        return states
    listed = dict(line.split(maxsplit=1) for line in queued.splitlines() if line.strip())
    states.update({job: listed.get(job, "GONE (unknown to sacct and squeue)") for job in missing})
    return states


def _slurm(command: list[str]) -> str | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
