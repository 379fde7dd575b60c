"""Hand run jobs to submitit: SLURM job arrays, bounded local processes, or the debug executor.

The cluster is always named (``AutoExecutor(cluster=...)``): submitit would otherwise pick SLURM
whenever an ``srun`` binary is on PATH. SLURM parameters are built once, in submitit's own names,
and used both to submit and to print the dry run's sbatch script (by submitit's own generator), so
the script shown is the script submitted. Arrays are split at the cluster's MaxArraySize, which
submitit does not do.

Locally, submitit's controller signals a job (USR2) 30 s before ``time_min`` whatever
``signal_delay_s`` says, and restarts a requeued job at most 5 times.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import time
import types
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

import submitit
from submitit.core.utils import FailedJobError
from submitit.slurm import slurm as submitit_slurm

from studies.job import JobSpec, RunJob
from studies.ledger import Ledger
from studies.resources import Resources

CLUSTERS = ("local", "slurm", "debug")
POLL_S = 0.5


def default_parallelism(resources: Resources) -> int:
    """Local runs at once: as many as the machine's cores hold at ``cpus_per_task`` each (one
    on a GPU profile: the local executor gives every run the same GPU). On the 2-core machine
    two 1-thread tiny runs train 1.6x more images per second than one 2-thread run, because
    the tiny model's small matmuls do not keep two threads busy."""
    if resources.gpus_per_node:
        return 1
    return max(1, len(os.sched_getaffinity(0)) // resources.cpus_per_task)


def slurm_parameters(resources: Resources, name: str) -> dict[str, Any]:
    """sbatch settings, in the names of submitit's sbatch generator: ``nodes`` x ``tasks`` tasks
    (one per GPU by default) make one DDP run, every knob of ``Resources`` passed through."""
    r = resources
    optional = {
        "gpus_per_node": r.gpus_per_node if not r.gres_requests_gpus else 0,
        "partition": r.partition, "account": r.account, "qos": r.qos, "constraint": r.constraint,
        "gres": r.gres, "exclusive": r.exclusive, "additional_parameters": dict(r.sbatch),
        "setup": [*_rendezvous_note(r), *r.setup],
        # a rank that stops (an error, a refused attempt on rank 0) must not leave the others
        # waiting in a collective until torch's 30-minute timeout
        "srun_args": [*(["--kill-on-bad-exit=1"] if r.world_size > 1 else []), *r.srun_args],
    }
    return {"job_name": name, "time": r.time_min, "nodes": r.nodes, "ntasks_per_node": r.tasks,
            "cpus_per_task": r.cpus_per_task, "mem": submitit_slurm._convert_mem(r.mem_gb),
            "signal_delay_s": r.signal_delay_s, "array_parallelism": r.array_parallelism,
            **{key: value for key, value in optional.items() if value}}  # unset: not in the script


def _rendezvous_note(r: Resources) -> list[str]:
    """Comment lines for the script of a multi-process run, where a reader looks for them: how
    its processes find each other (``core.distributed.init_distributed``)."""
    if r.world_size == 1:
        return []
    return [f"# one DDP run of {r.nodes} node(s) x {r.tasks} task(s); core.distributed reads SLURM_PROCID, "
            "SLURM_NTASKS, SLURM_LOCALID",
            "# rendezvous: MASTER_ADDR = the first node of $SLURM_JOB_NODELIST,",
            "#             MASTER_PORT = 20000 + $SLURM_JOB_ID % 20000 (export either in setup to choose it)"]


def executor(cluster: str, folder: Path, resources: Resources, name: str) -> submitit.AutoExecutor:
    kwargs = {f"{cluster}_max_num_timeout": resources.max_timeouts} if cluster != "debug" else {}
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster, **kwargs)
    if cluster == "slurm":
        ex.update_parameters(**{f"slurm_{k}": v for k, v in slurm_parameters(resources, name).items()})
    elif cluster == "local":  # one process on at most one GPU (nodes and tasks_per_node are SLURM's)
        ex.update_parameters(timeout_min=resources.time_min, name=name, tasks_per_node=1,
                             gpus_per_node=min(1, resources.gpus_per_node))
    return ex


def sbatch_script(folder: Path, resources: Resources, name: str, count: int) -> str:
    """The sbatch script a submission of ``count`` runs (one job array) would use."""
    python = shlex.quote(sys.executable)
    holder = types.SimpleNamespace(python=python, folder=folder / "%j")
    command = submitit_slurm.SlurmExecutor._submitit_command_str.fget(holder)
    params = slurm_parameters(resources, name)
    if count > 1:
        params["map_count"] = count
    return submitit_slurm._make_sbatch_string(command=command, folder=folder / "%j", **params)


def max_array_size() -> int | None:
    """The cluster's MaxArraySize (array indices must stay below it); None if unknown."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else None


def chunks(items: Sequence[Any], size: int | None) -> list[Sequence[Any]]:
    size = size or len(items) or 1
    return [items[i:i + size] for i in range(0, len(items), size)]


class SubmitError(RuntimeError):
    """sbatch refused a job array. The message is sbatch's own, on one line; ``jobs`` are the
    arrays' jobs submitted before it (a study split at MaxArraySize), in the order of the specs."""

    def __init__(self, message: str, jobs: list[submitit.Job]):
        super().__init__(message)
        self.jobs = jobs


def submit_slurm(ex: submitit.AutoExecutor, specs: list[JobSpec]) -> list[submitit.Job]:
    """One job array per MaxArraySize runs; returns the jobs in the order of ``specs``.

    When sbatch refuses an array, the attempts of the runs it did not take are withdrawn from
    the ledger before ``SubmitError`` is raised: those runs never started, so they stay missing
    (a plain rerun submits them once the cause is fixed), not failed."""
    jobs: list[submitit.Job] = []
    for chunk in chunks(specs, max_array_size()):
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's error before raising it
                with ex.batch():
                    batch = [ex.submit(RunJob(spec)) for spec in chunk]
        except FailedJobError as error:
            message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
            _withdraw(specs[len(jobs):], f"not submitted: {message}")
            raise SubmitError(message, jobs) from error
        jobs.extend(batch)
    return jobs


def _withdraw(specs: Sequence[JobSpec], reason: str) -> None:
    """Take back the attempts of runs that were never submitted. Optuna cannot delete a trial; one
    without a run key belongs to no run (``Ledger.attempts``, the reports), and FAIL with the
    reason keeps the refusal on record for the dashboard."""
    if not specs:
        return
    ledger = Ledger.load(specs[0].storage, specs[0].study)
    for spec in specs:
        ledger.set_attrs(spec.trial, {"run_key": None})
        ledger.fail(spec.trial, reason)


def run_local(ex: submitit.AutoExecutor, prepare: Sequence[Callable[[], JobSpec | None]], max_parallel: int,
              submitted: Callable[[JobSpec, submitit.Job], None],
              finished: Callable[[JobSpec, submitit.Job], None]) -> None:
    """Run jobs as local processes, at most ``max_parallel`` training at a time and as many more
    starting up and waiting for a slot (``studies.slots``), echoing their output. One waiting run
    per slot, because runs of one study often end together (same shape, started together), and a
    single waiting run would leave the second freed slot idle for a whole start-up.

    ``prepare`` creates a run's ledger trial only when its process starts, so runs that never
    started stay "missing" (not "failed") if the launcher is stopped; it returns None for a run
    that another launcher claimed meanwhile.
    """
    queue = deque(prepare)
    active: list[tuple[JobSpec, submitit.Job, _Tail]] = []
    while queue or active:
        while queue and len(active) < 2 * max_parallel:
            spec = queue.popleft()()
            if spec is None:
                continue
            job = ex.submit(RunJob(spec))
            submitted(spec, job)
            active.append((spec, job, _Tail(job.paths.stdout, f"[{spec.label}] ")))
        for entry in list(active):
            spec, job, tail = entry
            done = job.done()
            tail.pump()
            if done:
                finished(spec, job)
                active.remove(entry)
        time.sleep(POLL_S)


class _Tail:
    """Echo the complete new lines of a job's stdout log, prefixed with the run's label unless
    the job labelled the line itself (so each line names its run once; submitit's own INFO lines
    are left in the log)."""

    def __init__(self, path: Path, prefix: str):
        self.path, self.prefix, self.offset, self.partial = path, prefix, 0, ""

    def pump(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                f.seek(self.offset)
                text = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        for line in lines:
            if not line.startswith("submitit INFO"):
                print(("" if line.startswith(self.prefix) else self.prefix) + line.rstrip("\r"), flush=True)
