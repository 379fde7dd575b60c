"""One launcher per cluster (``LAUNCHERS``, by the names ``--cluster`` takes): how a study's runs
become submitit jobs there, and everything else about a launch that differs between clusters.

``Local`` runs each job as a process of this machine and waits for them; ``Debug`` runs them one
after another in this process; both write the report once their runs have ended. ``Slurm``
submits job arrays from the login node and returns: each job reports to the ledger itself,
shows its progress in its log, and the last to end writes the report. Every launcher names its
cluster to submitit (``AutoExecutor(cluster=...)``): submitit would otherwise pick SLURM whenever
an ``srun`` binary is on PATH.

Locally, submitit's controller signals a job (USR2) 30 s before ``time_min`` whatever
``signal_delay_s`` says, and restarts a requeued job at most 5 times.
"""
from __future__ import annotations

import contextlib
import io
import os
import shlex
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, ClassVar, Collection, Mapping, Sequence

import submitit
from optuna.trial import TrialState
from submitit.core.utils import FailedJobError

from studies import liveness, progress, sbatch, slots, status
from studies.job import JobSpec, RunJob
from studies.layout import Layout
from studies.ledger import Ledger
from studies.plan import Run
from studies.resources import Resources

POLL_S = 0.5  # how often the local launcher looks at its jobs and their logs
# Claims runs (``studies.attempts``): the specs of the jobs of those still as their rows found them.
Claim = Callable[[Sequence[status.RunStatus]], list[JobSpec]]


def default_parallelism(resources: Resources) -> int:
    """Local runs at once: as many as the machine's cores hold at ``cpus_per_task`` each (one
    on a GPU profile: the local executor gives every run the same GPU). On the 2-core machine
    two 1-thread tiny runs train 1.6x more images per second than one 2-thread run, because
    the tiny model's small matmuls do not keep two threads busy."""
    if resources.gpus_per_node:
        return 1
    return max(1, len(os.sched_getaffinity(0)) // resources.cpus_per_task)


class Tracker:
    """What a launch records and prints as its jobs are submitted and end: each job on its trial,
    each end in one line followed by the progress line, and the labels of the runs that failed.
    ``queued``: the keys of the runs the launch will start; ``at_once``: how many train at a time,
    over which the progress line's ETA deals out those still waiting."""

    def __init__(self, ledger: Ledger, metric: str, runs: Sequence[Run], queued: Collection[str], at_once: int):
        self.ledger, self.metric, self.runs, self.queued, self.at_once = ledger, metric, runs, queued, at_once
        self.failed: list[str] = []

    def rows(self) -> list[status.RunStatus]:
        """Each run's state now, a RUNNING trial's as its job's (pending, running); of each trial,
        only the attributes the progress line needs (the whole trials of a large SQLite ledger
        take 12x longer to read: ``benchmarks.run --only ledger``)."""
        attempts = self.ledger.attempts(status.STATUS_ATTRS)
        return status.statuses(self.runs, attempts, liveness.job_states(t for ts in attempts.values() for t in ts))

    def submitted(self, spec: JobSpec, job: submitit.Job, owner: Mapping[str, Any]) -> None:
        """Record the job on its trial, with ``owner``: what ``liveness`` asks whether it lives."""
        self.ledger.set_attrs(spec.trial, {"job_id": job.job_id, "submitit_dir": str(job.paths.folder), **owner})

    def finished(self, spec: JobSpec, job: submitit.Job) -> None:
        """The job has ended: its outcome in one line (a job that ended without reporting is
        marked failed here), then the progress line."""
        trial = self.ledger.trial(spec.trial)
        if trial.state == TrialState.RUNNING:
            self.ledger.fail(spec.trial, f"job {job.job_id} ended without reporting; see {job.paths.stderr}")
            trial = self.ledger.trial(spec.trial)
        if trial.state == TrialState.COMPLETE:
            print(f"[{spec.label}] done: {self.metric} = {trial.value:.2f}", flush=True)
        else:
            self.failed.append(spec.label)
            error = str(trial.user_attrs.get("error"))
            log = "" if str(job.paths.stderr) in error else f" (log: {job.paths.stderr})"
            print(f"[{spec.label}] FAILED: {error}{log}", flush=True)
        print(progress.line(self.rows(), self.queued, self.at_once), flush=True)


class Launcher:
    """What a launch does that depends on the cluster; each subclass overrides what differs.
    ``max_parallel``: the runs that train at once on this machine (``--max-parallel``; a SLURM
    array's parallelism is its resources')."""

    name: ClassVar[str]  # the cluster, as --cluster and submitit name it
    # whether it waits for its jobs to end: then it writes the report; otherwise the last job to end
    # writes it, and each job shows its progress in its log
    waits: ClassVar[bool] = True

    def __init__(self, max_parallel: int = 1):
        self.max_parallel = max_parallel

    def executor(self, folder: Path, resources: Resources, study: str) -> submitit.AutoExecutor:
        """submitit's executor for this cluster, each job's files in ``folder/<job id>``."""
        return submitit.AutoExecutor(folder=folder / "%j", cluster=self.name)

    def tasks_per_run(self, resources: Resources) -> int:
        """The processes one run trains on: one here (``nodes`` and ``tasks_per_node`` are SLURM's)."""
        return 1

    @property
    def at_once(self) -> int:
        """How many of its runs train at a time, over which the progress line's ETA deals out
        those still waiting (a launcher that waits prints it)."""
        return 1

    def concurrent(self, resources: Resources) -> int:
        """How many runs of one submission can train at the same time: what a boundary search
        probes per round (``studies.boundary``)."""
        return self.at_once

    def slot_files(self, folder: Path) -> tuple[str, ...]:
        """The lock files of the slots a job waits for before it trains (``studies.slots``); none:
        it trains as soon as it starts."""
        return ()

    def owner(self, job: submitit.Job) -> dict[str, Any]:
        """What identifies a submitted job's process on its trial (``liveness``); nothing where
        the cluster is asked about the job by its id."""
        return {}

    def dry_run_lines(self, results: Path, resources: Resources, study: str, count: int) -> list[str]:
        """What ``--dry-run`` says about a launch of ``count`` runs here."""
        return [f"{self.name}: at most {self.max_parallel} run(s) at once, on this machine"]

    def follow_hint(self, argv: Sequence[str]) -> str | None:
        """The line a launch ends with, if its runs go on after it has returned: how to follow them."""
        return None

    def launch(self, executor: submitit.AutoExecutor, todo: Sequence[status.RunStatus], claim: Claim,
               tracker: Tracker) -> None:
        """Claim the runs of ``todo`` (``claim``) and run their jobs, telling ``tracker``."""
        raise NotImplementedError


class Local(Launcher):
    """Jobs as processes of this machine, at most ``max_parallel`` training at a time and as many
    more starting up and waiting for a slot (``studies.slots``), their output echoed. One waiting
    run per slot, because runs of one study often end together (same shape, started together), and
    a single waiting run would leave the second freed slot idle for a whole start-up. Each run is
    claimed only when its process starts, so runs that never started stay "missing" (not "failed")
    if the launcher is stopped."""

    name = "local"

    def executor(self, folder: Path, resources: Resources, study: str) -> submitit.AutoExecutor:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.name,
                                         local_max_num_timeout=resources.max_timeouts)
        # one process on at most one GPU (nodes and tasks_per_node are SLURM's)
        executor.update_parameters(timeout_min=resources.time_min, name=study, tasks_per_node=1,
                                   gpus_per_node=min(1, resources.gpus_per_node))
        return executor

    @property
    def at_once(self) -> int:
        return self.max_parallel

    def slot_files(self, folder: Path) -> tuple[str, ...]:
        return slots.slot_files(folder, self.max_parallel)

    def owner(self, job: submitit.Job) -> dict[str, Any]:
        return liveness.owner_attrs("job", int(job.job_id))  # a local job's id is its pid

    def launch(self, executor: submitit.AutoExecutor, todo: Sequence[status.RunStatus], claim: Claim,
               tracker: Tracker) -> None:
        queue = deque(todo)
        active: list[tuple[JobSpec, submitit.Job, _Tail]] = []
        while queue or active:
            while queue and len(active) < 2 * self.max_parallel:
                for spec in claim([queue.popleft()]):
                    job = executor.submit(RunJob(spec))
                    print(f"[{spec.label}] submitted: job {job.job_id}, log {job.paths.stdout}", flush=True)
                    tracker.submitted(spec, job, self.owner(job))
                    active.append((spec, job, _Tail(job.paths.stdout, f"[{spec.label}] ")))
            for entry in list(active):
                spec, job, tail = entry
                done = job.done()
                tail.pump()
                if done:
                    tracker.finished(spec, job)
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


class Debug(Launcher):
    """Jobs one after another in this process, each claimed just before it runs (submitit's debug
    executor; it opens pdb on an error)."""

    name = "debug"

    def owner(self, job: submitit.Job) -> dict[str, Any]:
        return liveness.owner_attrs("job", os.getpid())

    def launch(self, executor: submitit.AutoExecutor, todo: Sequence[status.RunStatus], claim: Claim,
               tracker: Tracker) -> None:
        for row in todo:
            for spec in claim([row]):
                job = executor.submit(RunJob(spec))
                tracker.submitted(spec, job, self.owner(job))
                with contextlib.suppress(Exception):  # the job told the ledger; finished() prints it
                    job.results()  # runs it here; the debug executor opens pdb on an error
                tracker.finished(spec, job)


class Slurm(Launcher):
    """Job arrays, one per MaxArraySize runs, whose runs are claimed all at once (one lock, one
    read of the ledger); the launcher returns once sbatch has taken them."""

    name = "slurm"
    waits = False

    def executor(self, folder: Path, resources: Resources, study: str) -> submitit.AutoExecutor:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.name,
                                         slurm_max_num_timeout=resources.max_timeouts)
        executor.update_parameters(**{f"slurm_{k}": v for k, v in sbatch.slurm_parameters(resources, study).items()})
        return executor

    def tasks_per_run(self, resources: Resources) -> int:
        return resources.world_size

    def concurrent(self, resources: Resources) -> int:
        return resources.array_parallelism

    def dry_run_lines(self, results: Path, resources: Resources, study: str, count: int) -> list[str]:
        folder = Layout(results).submitit / "<submission>"
        return [f"sbatch script (one job array of {count} runs; split at the cluster's MaxArraySize when larger):",
                sbatch.sbatch_script(folder, resources, study, count)]

    def follow_hint(self, argv: Sequence[str]) -> str | None:
        again = [a for a in argv if a != "--retry-failed"]
        return "watch: " + shlex.join(["python", "-m", "studies.run", *again, "--status"])

    def launch(self, executor: submitit.AutoExecutor, todo: Sequence[status.RunStatus], claim: Claim,
               tracker: Tracker) -> None:
        specs = claim(todo)
        try:
            jobs = self.submit(executor, specs)
        except SubmitError as error:  # sbatch's own words; the refused runs stay missing
            print(error, file=sys.stderr, flush=True)
            jobs = error.jobs
            tracker.failed.extend(s.label for s in specs[len(jobs):])
        for spec, job in zip(specs, jobs):
            tracker.submitted(spec, job, self.owner(job))
        print(f"submitted {len(jobs)} run(s): job ids {', '.join(j.job_id for j in jobs) or '-'}; "
              f"logs in {executor.folder.parent}")  # submitit's folder is the submission's "%j"

    def submit(self, executor: submitit.AutoExecutor, specs: Sequence[JobSpec]) -> list[submitit.Job]:
        """One job array per MaxArraySize runs; returns the jobs in the order of ``specs``.

        When sbatch refuses an array, the attempts of the runs it did not take are withdrawn from
        the ledger before ``SubmitError`` is raised: those runs never started, so they stay missing
        (a plain rerun submits them once the cause is fixed), not failed."""
        jobs: list[submitit.Job] = []
        for chunk in sbatch.chunks(specs, sbatch.max_array_size()):
            try:
                with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's error before raising it
                    with executor.batch():
                        batch = [executor.submit(RunJob(spec)) for spec in chunk]
            except FailedJobError as error:
                message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
                _withdraw(specs[len(jobs):], f"not submitted: {message}")
                raise SubmitError(message, jobs) from error
            jobs.extend(batch)
        return jobs


class SubmitError(RuntimeError):
    """sbatch refused a job array. The message is sbatch's own, on one line; ``jobs`` are the
    arrays' jobs submitted before it (a study split at MaxArraySize), in the order of the specs."""

    def __init__(self, message: str, jobs: list[submitit.Job]):
        super().__init__(message)
        self.jobs = jobs


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


LAUNCHERS: dict[str, type[Launcher]] = {kind.name: kind for kind in (Local, Slurm, Debug)}
CLUSTERS = tuple(LAUNCHERS)


def launcher(cluster: str, max_parallel: int) -> Launcher:
    return LAUNCHERS[cluster](max_parallel)
