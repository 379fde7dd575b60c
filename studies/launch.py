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
from submitit.slurm import slurm as submitit_slurm

from studies.job import JobSpec, RunJob
from studies.spec import Resources

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
    """sbatch settings, in the names of submitit's sbatch generator. One task per GPU (DDP)."""
    params: dict[str, Any] = {
        "job_name": name, "time": resources.time_min, "nodes": resources.nodes,
        "ntasks_per_node": max(1, resources.gpus_per_node), "cpus_per_task": resources.cpus_per_task,
        "mem": submitit_slurm._convert_mem(resources.mem_gb), "signal_delay_s": resources.signal_delay_s,
        "array_parallelism": resources.array_parallelism,
    }
    if resources.gpus_per_node:
        params["gpus_per_node"] = resources.gpus_per_node
    if resources.partition:
        params["partition"] = resources.partition
    return params


def executor(cluster: str, folder: Path, resources: Resources, name: str) -> submitit.AutoExecutor:
    kwargs = {f"{cluster}_max_num_timeout": resources.max_timeouts} if cluster != "debug" else {}
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster, **kwargs)
    if cluster == "slurm":
        ex.update_parameters(**{f"slurm_{k}": v for k, v in slurm_parameters(resources, name).items()})
    elif cluster == "local":  # one process on at most one GPU: core's DDP reads torchrun or SLURM
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


def submit_slurm(ex: submitit.AutoExecutor, specs: list[JobSpec]) -> list[submitit.Job]:
    """One job array per MaxArraySize runs; returns the jobs in the order of ``specs``."""
    jobs: list[submitit.Job] = []
    for chunk in chunks(specs, max_array_size()):
        with ex.batch():
            batch = [ex.submit(RunJob(spec)) for spec in chunk]
        jobs.extend(batch)
    return jobs


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
    """Echo the complete new lines of a job's stdout log, prefixed with the run's label
    (submitit's own INFO lines are left in the log)."""

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
                print(self.prefix + line.rstrip("\r"), flush=True)
