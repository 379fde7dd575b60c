"""What runs inside a submitted job: one run attempt, recorded, reported to the ledger.

``RunJob`` is a ``submitit.helpers.Checkpointable``: on preemption or a time limit submitit calls
``checkpoint()``, which resubmits the same job description; the resume point is the trainer's
checkpoint in the run folder, never pickled state. The job reports its own outcome to the ledger
(COMPLETE with the study's metric, or FAIL with the error), so the ledger is right even after the
launcher has exited; while it is being requeued it reports nothing and the trial stays RUNNING,
whatever error the teardown of the requeue raises (a DataLoader worker killed by SLURM's SIGTERM
first): a requeue that did not happen leaves a job that sacct lists as ended, found dead by the
launcher's next look (``liveness``).
On several tasks (DDP: one per GPU, or ``tasks_per_node`` gloo processes on CPU) only rank 0
records and reports; every rank trains, and ``core.distributed`` finds the others from SLURM's
variables. Rank 0 holds the run folder (``claims.training``) while it trains, so no other process
trains it. Only rank 0 answers the requeue signal (submitit's rule); the other ranks stop when it
leaves, so their logs may end with gloo's "Connection closed by peer" before the job starts again.
"""
from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import submitit
from optuna.trial import TrialState

from core.config import DINOConfig
from studies import claims, liveness, slots
from studies.autoreport import write_report_if_finished
from studies.ledger import Ledger

if TYPE_CHECKING:  # sacred (0.4 s to import) is loaded where a job records, not by every importer of RunJob
    from sacred import Experiment

# The callback (kind, name) a metric of core.train's result is reported from as it trains.
_INTERMEDIATE = {"knn_top1": ("knn", "top1"), "knn_top5": ("knn", "top5"),
                 "student_knn_top1": ("knn", "student_top1"), "student_knn_top5": ("knn", "student_top5"),
                 "linear_top1": ("knn", "linear_top1"), "loss": ("epoch", "loss")}
# What of core.train's result (and the job's cost) the ledger keeps as the trial's attributes.
_RESULT_ATTRS = ("knn_top1", "knn_top5", "student_knn_top1", "student_knn_top5", "linear_top1", "student_linear_top1",
                 "loss", "target_entropy", "kl", "student_entropy", "collapse", "stopped_epoch", "wall_seconds",
                 "gpu_hours", "cpu_hours")


@dataclass(frozen=True)
class JobSpec:
    """Everything a job needs, plain data so it pickles across machines and versions."""

    study: str
    storage: str
    trial: int
    run_id: str
    label: str
    metric: str
    config: Mapping[str, Any]
    run_dir: str
    sacred_root: str
    observers: Mapping[str, str]
    threads: int  # torch's intra-op threads: the CPUs the scheduler gave the task
    slots: tuple[str, ...] = ()  # local runs: the lock files of the launcher's slots (studies.slots)
    # "module:function" this job builds the study's report with if it ends last; empty where the
    # launcher waits for its jobs and writes the report itself
    report_builder: str = ""
    progress: bool = False  # the trainer's progress lines, for a job whose log is where they are read


class RunJob(submitit.helpers.Checkpointable):
    def __init__(self, spec: JobSpec):
        self.spec = spec
        self._requeueing = False

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on the requeue signal: run the same attempt again; the trainer
        resumes from the last epoch checkpoint in the run folder."""
        self._requeueing = True
        return submitit.helpers.DelayedSubmission(type(self)(self.spec))

    def __call__(self) -> dict[str, Any] | None:
        import torch  # here, not at the top: the launcher never loads torch (nor the slot waits)

        from core.train import train  # the slow imports, done before waiting for a slot
        from studies import record

        _OwnerOnly.guard_job_signals()
        torch.set_num_threads(self.spec.threads)
        spec, env = self.spec, submitit.JobEnvironment()
        config = DINOConfig.from_dict(spec.config)
        meta = {"study": spec.study, "run_id": spec.run_id, "label": spec.label, "trial": spec.trial,
                "run_dir": spec.run_dir}
        # only rank 0 records; its sacred scan of the sources is done before waiting for a slot too
        experiment = (record.experiment(spec.study, spec.run_id, spec.sacred_root, config, meta)
                      if env.global_rank == 0 else None)
        slot = slots.acquire(spec.slots) if spec.slots else None
        try:
            if experiment is None:
                train(config, spec.run_dir, progress=False)
                return None
            return self._attempt(train, config, experiment)
        finally:
            if slot is not None:
                os.close(slot)

    def _attempt(self, train: Callable[..., dict[str, float]], config: DINOConfig,
                 experiment: Experiment) -> dict[str, Any] | None:
        from studies import record

        started = time.time()
        spec, env = self.spec, submitit.JobEnvironment()
        ledger = Ledger.load(spec.storage, spec.study)
        trial = ledger.trial(spec.trial)
        if trial.state != TrialState.RUNNING:
            raise RuntimeError(f"trial {spec.trial} of {spec.study} is {trial.state.name}, not RUNNING: this attempt "
                               "was superseded or marked dead; not training")
        experiment.add_config({"params": dict(trial.params)})  # the axes, for TensorBoard's HParams tab
        ledger.set_attrs(spec.trial, {"job_id": env.job_id, **liveness.owner_attrs("worker", os.getpid())})
        report = _INTERMEDIATE[spec.metric]

        def body(log) -> dict[str, float]:
            def callback(kind: str, step: int, metrics: Mapping[str, float]) -> None:
                log(kind, step, metrics)
                if kind == report[0] and report[1] in metrics:
                    ledger.report(spec.trial, step, float(metrics[report[1]]))
            return train(config, spec.run_dir, callback, progress=spec.progress)

        try:
            with claims.training(spec.run_dir):
                print(f"[{spec.label}] started: training in {spec.run_dir} (trial {spec.trial}, "
                      f"job {env.job_id}, {env.num_tasks} task(s))", flush=True)
                result = record.recorded_run(experiment, run_id=spec.run_id, sacred_root=spec.sacred_root,
                                             observers=spec.observers, job_id=env.job_id, num_tasks=env.num_tasks,
                                             started=started, body=body, requeueing=lambda: self._requeueing)
        except BaseException as error:
            if not self._requeueing:  # while requeueing, whatever ends the attempt is the requeue
                ledger.fail(spec.trial, "the job exited during training" if isinstance(error, SystemExit)
                            else f"{type(error).__name__}: {error}".splitlines()[0])
            raise
        value = result[spec.metric]
        if not math.isfinite(value):
            ledger.fail(spec.trial, f"{spec.metric} is {value}")
            return result
        ledger.complete(spec.trial, value, {k: result[k] for k in _RESULT_ATTRS if k in result})
        print(f"[{spec.label}] {spec.metric} = {value:.2f}", flush=True)
        if spec.report_builder:
            write_report_if_finished(spec.report_builder, spec.study, Path(spec.sacred_root).parent,
                                     spec.storage, ledger)
        return result


class _OwnerOnly:
    """A signal handler that acts in the process that installed it only.

    SLURM signals every process of a job (the requeue signal, then SIGTERM), and a process forked
    from the job's own (a DataLoader worker) inherits submitit's handlers: each worker would
    checkpoint and requeue the job again, and ``scontrol requeue`` of a job already requeued fails,
    which failed the run. The job's process alone answers."""

    def __init__(self, handler: Callable[[int, Any], Any]):
        self.handler, self.owner = handler, os.getpid()

    def __call__(self, signum: int, frame: Any) -> None:
        if os.getpid() == self.owner:
            self.handler(signum, frame)

    @classmethod
    def guard_job_signals(cls) -> None:
        """Guard the Python handlers of the signals SLURM sends a job (those submitit installed)."""
        for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGCONT):
            handler = signal.getsignal(signum)
            if callable(handler) and not isinstance(handler, cls):
                signal.signal(signum, cls(handler))
