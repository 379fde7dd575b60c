"""Where a study's results live on disk, and what its ledger trials carry: the one place that the
writers (the launcher, the jobs) and the readers (``--status``, the reports, the benchmark) learn
both from, so a renamed file or attribute is renamed everywhere at once.

On-disk layout of one study's results folder (default ``runs/<study>/``; ``--results DIR``; on
SLURM it must be on a filesystem the compute nodes share)::

    <results>/
      ledger.journal                 optuna JournalFileBackend (unless --storage URL); optuna study
                                     named <study>, one trial per attempt of a run
      ledger.journal.damaged-<stamp> the damaged lines a repair took out of the journal (studies.journal)
      launch.lock                    flock a launcher holds while it claims a run (studies.claims)
      study.json                     the study as last launched: metric, axes (labels, paper numbers),
                                     a boundary study's [boundary] search, runs (key, label, axes,
                                     seed, paper, folder name), and
                                     launch_options: the run-defining options (profile, set, data,
                                     seeds) of each option set the study holds, reused by every later
                                     command on the folder (studies.identity)
      runs/<label>_<key8>/           the trainer's folder for one run (one config), shared by all its
                                     attempts: checkpoint.pth (written every epoch; retries resume it),
                                     checkpoint.prev.pth (the epoch before: resumed from if the newest is
                                     unreadable), train.lock (flock of the job training it: "pid P on H")
      sacred/<run_id>/               sacred FileStorageObserver folder of one attempt, run_id =
                                     <key>-a<attempt>: run.json (status, host, git, heartbeat,
                                     result), config.json ({"dino": config, "study": ..., "seed"}),
                                     metrics.json, info.json, cout.txt
      sacred/_sources/               source files sacred stored (deduplicated by hash)
      submitit/<stamp>/<job_id>/     submitit's pickles and logs per submission: <job_id>_<task>_log.out
                                     / .err (job_id "123_4" for task 4 of array 123; a pid locally)
      baselines/<digest>.json        the random-network and raw-pixel k-NN of one config, measured
                                     once by the first report that needs it, with its command
      submitit/slots/slot-<i>.lock   local runs: one flock per run allowed to train at once (studies.slots)
      ledger.journal.snapshot        optuna's replay state of the journal up to an offset (studies.journal)
      report/report.html             the study's report (reports.build), rebuilt when a launch ends

Watch a study live: ``optuna-dashboard <results>/ledger.journal`` (``pip install -e '.[dashboard]'``).
Ledger trials (``optuna.load_study(study_name=<study>, storage=...)``; params: the run's axes,
``studies.params``): state COMPLETE with value =
the study's metric, FAIL, or RUNNING; user attributes ``run_key``, ``run_id``, ``attempt``,
``label`` ("m=0.9 seed=0"), ``axes`` ({axis: value label}), ``seed``, ``paper`` (the paper's number
or None), ``profile``, ``cluster``, ``results_dir``, ``run_dir``, ``sacred_dir``, ``job_id``,
``submitit_dir``, ``launcher_*``/``job_*``/``worker_*`` (host, pid, pid start, since: who owns the trial; a
RUNNING trial without ``worker_*`` is pending: its job has not started training),
and at the end ``knn_top1``, ``knn_top5`` (the teacher's k-NN), ``student_knn_top1``,
``student_knn_top5`` (the student's), ``linear_top1``, ``student_linear_top1`` (linear probes), ``loss``, ``target_entropy``, ``kl``, ``student_entropy``,
``collapse`` (the run's own verdict, ``core.collapse``), ``wall_seconds``, ``gpu_hours``,
``cpu_hours``, or ``error`` (one line) on FAIL. Intermediate values: the metric at
each evaluation. A run's state is its latest attempt's.

Metrics (``metrics.json``, sacred's ``{name: {steps, values, timestamps}}``): ``iteration.<m>``
every ``log_every`` iterations (step = global iteration) for m in loss, target_entropy, kl, lr,
weight_decay, momentum, teacher_temp, center_norm, student_entropy; ``epoch.<m>`` (step = epochs
done) for the same
plus epoch_seconds, images_per_second; ``knn.top1``, ``knn.top5``, ``knn.linear_top1`` and the
same with ``student_`` (step = epochs done). A resumed attempt first logs again the epoch and k-NN
records its checkpoint holds (a requeued segment skips those its file already has), so a SIGKILL
between a checkpoint and sacred's flush loses no epoch. A requeued attempt appends to the same file
and a retried run starts a new attempt folder, so an epoch may appear twice (the job was killed
after logging it, before its checkpoint, or its newest checkpoint was unreadable): take the last
value per step, and read a run's curve across its attempts in attempt order.

A requeue (preemption or time limit, through submitit's checkpoint) continues the attempt: same
trial, same sacred folder, one more entry in ``info.json``'s ``segments`` (id ``<run_id>.r<k>``,
job id, host, start, end, seconds, status REQUEUED/COMPLETED/FAILED); observers added with
``--observer`` get one sacred run per segment, with those ids. ``info.json`` also holds
``versions`` (python, torch, torchvision, timm, CUDA, cuDNN, devices), ``slurm`` (the job's
SLURM_* variables) and the cost, summed over segments: ``wall_seconds``, ``gpus``, ``cpus``,
``gpu_hours`` (GPUs x wall hours, 0 on CPU) and ``cpu_hours``; the sacred result (``run.json``)
holds the trainer's result (knn_top1, knn_top5, student_knn_top1, student_knn_top5, linear_top1,
student_linear_top1, loss, target_entropy, kl, student_entropy, collapse, epochs, train_seconds)
plus the same cost. The ledger is authoritative for a run's state: the sacred status of an
attempt whose job was killed stays RUNNING.
"""
from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from optuna.trial import FrozenTrial

JOURNAL = "ledger.journal"
PLAN = "study.json"
REPORT = "report"


@dataclass(frozen=True)
class Layout:
    """The paths of one results folder."""

    results: Path

    @property
    def journal(self) -> Path:
        return self.results / JOURNAL

    @property
    def plan(self) -> Path:
        return self.results / PLAN

    @property
    def launch_lock(self) -> Path:
        return self.results / "launch.lock"

    @property
    def sacred(self) -> Path:
        return self.results / "sacred"

    def sacred_run(self, run_id: str) -> Path:
        return self.sacred / run_id

    def run_dir(self, folder: str) -> Path:
        return self.results / "runs" / folder

    @property
    def submitit(self) -> Path:
        return self.results / "submitit"

    @property
    def slots(self) -> Path:
        return self.submitit / "slots"

    @property
    def baselines(self) -> Path:
        return self.results / "baselines"

    @property
    def report(self) -> Path:
        return self.results / REPORT

    @property
    def report_page(self) -> Path:
        return self.report / "report.html"


@dataclass(frozen=True)
class Attempt:
    """What the launcher records on a trial when it creates one attempt of a run (optuna user
    attributes), written with ``attrs`` and read back with ``Attempt.of(trial)``. Later writers
    add ``job_id``, the owners' ``<role>_host/_pid/_pid_start`` (``studies.liveness``), and at
    the end the result or ``error``, which their readers take from the trial itself."""

    run_key: str
    run_id: str
    attempt: int
    label: str
    axes: Mapping[str, str]
    seed: int
    paper: float | None
    profile: str
    cluster: str
    results_dir: str
    run_dir: str
    sacred_dir: str

    def attrs(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "axes": dict(self.axes)}

    @classmethod
    def of(cls, trial: FrozenTrial) -> Attempt:
        """The attempt ``trial`` records. What a trial lacks reads as not written: None, or attempt
        0 and no axes (a trial of an older version; a submission sbatch refused, withdrawn with its
        run key set to None, belongs to no run)."""
        attrs = trial.user_attrs
        return cls(**{name: attrs.get(name, empty) for name, empty in _NOT_WRITTEN.items()})


_NOT_WRITTEN: dict[str, Any] = {**dict.fromkeys(f.name for f in dataclasses.fields(Attempt)), "attempt": 0,
                                 "axes": types.MappingProxyType({})}
