"""Record one training with sacred: config, host, git, versions, metrics, result and cost.

The FileStorageObserver folder of a run attempt is named by the ledger's run id, so a trial leads
to its folder and back. A requeued job (preemption, time limit) continues the same folder instead
of failing on sacred's ``FileExistsError``: each restart is a new sacred run with id
``<run id>.r<k>`` that appends to ``metrics.json`` and ``cout.txt`` and adds a segment to
``info.json``; the extra observers a user names see one run per segment under those ids.
Segments make the cost honest: wall time, GPU-hours and CPU-hours sum over all of them.

A resumed training first gives again the epoch and k-NN records its checkpoint holds
(``core.train``), so that an attempt retried after a SIGKILL records the epochs its predecessor
trained but never flushed; a record this attempt's ``metrics.json`` already holds from an earlier
segment, with the same value, is not logged twice.

Live curves (``core.live``) are fed by the same callback: ``--observer tensorboard=DIR`` writes
each attempt's event files to ``DIR/<study>/<label>/<run id>`` (TensorBoard's run selector lists
the arms by label, a retry beside its first attempt), with the run's axes in the HParams tab when
its sacred config holds them as ``params``; ``--observer wandb=PROJECT`` logs each attempt as the
W&B run ``<run id>`` named by its label, grouped by study, with the run's config. Both get only
what sacred logs, so a requeued segment gives them no point twice.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from sacred import SETTINGS, Experiment
from sacred.experiment import gather_command_line_options
from sacred.observers import FileStorageObserver
from sacred.utils import SacredInterrupt, apply_backspaces_and_linefeeds

from core import cli, live
from core.config import DINOConfig
from studies.spec import SpecError

REPO = Path(__file__).resolve().parent.parent
SETTINGS.DISCOVER_SOURCES = "sys"  # store every loaded module of the repository (core/, studies/)
Callback = Callable[[str, int, Mapping[str, float]], None]
# Observers of our own beside sacred's, each fed by the train callback: name -> what it takes.
LIVE = {"tensorboard": "DIR", "wandb": "PROJECT"}


class Requeued(SacredInterrupt):
    """The job is being requeued (preemption or time limit): sacred records status REQUEUED."""

    STATUS = "REQUEUED"

    def __init__(self, code: Any):
        super().__init__(f"requeued (exit code {code})")
        self.code = code


class SegmentedFileStorageObserver(FileStorageObserver):
    """A FileStorageObserver whose folder is fixed (the ledger's run id) and may already exist."""

    def __init__(self, basedir: str | Path, folder: str):
        super().__init__(basedir)
        self.folder = folder

    def _make_run_dir(self, _id: Any) -> None:
        self.dir = os.path.join(self.basedir, self.folder)
        os.makedirs(self.dir, exist_ok=True)


def observer_options(specs: list[str]) -> dict[str, str]:
    """``--observer mongo_db=mongodb://host/db`` -> sacred's own option ``{"--mongo_db": url}``;
    ``tensorboard=DIR`` -> ``{"tensorboard": absolute DIR}`` and ``wandb=PROJECT`` as it is, each
    refused here, before anything runs, if its package is not installed."""
    known = {o.get_flag()[2:] for o in gather_command_line_options()
             if o.apply_function.__module__.startswith("sacred.observers")}
    options, errors = {}, []
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not value or name not in known | set(LIVE):
            errors.append(f"--observer {spec}: write NAME=ARGUMENT with NAME one of "
                          f"{', '.join(f'{n}={a}' for n, a in LIVE.items())} or sacred's "
                          f"{', '.join(sorted(known))} (e.g. mongo_db=mongodb://host:27017/db)")
        elif name in LIVE:
            problem = _live_problem(name, value)
            if problem:
                errors.append(f"--observer {spec}: {problem}")
            options[name] = str(Path(value).absolute()) if name == "tensorboard" else value
        else:
            options[f"--{name}"] = value
    if errors:
        raise SpecError(errors)
    return options


def _live_problem(name: str, value: str) -> str | None:
    if problem := live.missing(name):
        return problem
    if name == "tensorboard":
        return cli.folder_problem(value, "the folder")
    if bad := [c for c in "/\\#?%:" if c in value]:  # what W&B refuses in a project name
        return (f"a W&B project name cannot hold {' '.join(bad)}; give the project's plain name "
                "(the team comes from WANDB_ENTITY)")
    return None


def _previous_segments(folder: Path) -> list[dict[str, Any]]:
    """The segments an earlier start of this attempt recorded in its ``info.json``."""
    try:
        return json.loads((folder / "info.json").read_text()).get("segments", [])
    except (OSError, ValueError):
        return []


def _logged(folder: Path) -> dict[str, dict[int, float]]:
    """What earlier starts of this attempt logged: metric name -> {step: value}."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return {name: dict(zip(series.get("steps", []), series.get("values", []))) for name, series in metrics.items()}


def _same(logged: float | None, value: float) -> bool:
    return logged is not None and (logged == value or math.isnan(logged) and math.isnan(value))


def experiment(study: str, run_id: str, sacred_root: str, config: DINOConfig,
               meta: Mapping[str, Any]) -> Experiment:
    """The sacred experiment of one run attempt, not started yet. Building it scans every loaded
    module of the repository and asks git about each (about half a second), so a local job builds
    it while it waits for a slot, hidden behind the runs that are training."""
    ex = Experiment(study, base_dir=str(REPO), save_git_info=_has_commit(REPO))
    ex.captured_out_filter = apply_backspaces_and_linefeeds
    ex.observers = [SegmentedFileStorageObserver(sacred_root, run_id)]
    ex.add_config({"dino": config.to_dict(), "study": dict(meta), "seed": config.seed})
    return ex


def recorded_run(ex: Experiment, *, run_id: str, sacred_root: str, observers: Mapping[str, str], job_id: str,
                 num_tasks: int, started: float, body: Callable[[Callback], dict[str, float | str]],
                 requeueing: Callable[[], bool]) -> dict[str, Any]:
    """Run ``body(callback)`` (the training) as the sacred run ``ex`` (from ``experiment``) and
    return its result with the cost.

    ``callback`` logs every metric as ``<kind>.<name>``; ``requeueing()`` says whether submitit is
    requeueing the job, in which case whatever leaves ``body`` is the requeue (recorded as REQUEUED,
    not FAILED): its ``SystemExit``, or an error of the teardown around it, such as a DataLoader
    worker that SLURM's SIGTERM to the job's processes killed first;
    ``started`` (epoch seconds) is when the job began, so the cost includes its start-up.
    """
    segments = _previous_segments(Path(sacred_root) / run_id)
    logged = _logged(Path(sacred_root) / run_id)
    segment_id = run_id if not segments else f"{run_id}.r{len(segments)}"

    def main(_run):
        segment = {"id": segment_id, "job_id": job_id, "host": os.uname().nodename,
                   "start": _iso(started), "end": None, "seconds": None, "status": "RUNNING"}
        _run.info.update(segments=segments + [segment], versions=_versions(),
                         slurm={k: v for k, v in os.environ.items() if k.startswith("SLURM_")})
        curves: list[Any] = []  # opened in the try below, so that a W&B that refuses is a failed run

        def callback(kind: str, step: int, metrics: Mapping[str, float]) -> None:
            fresh = {name: float(value) for name, value in metrics.items()
                     if not _same(logged.get(f"{kind}.{name}", {}).get(step), float(value))}
            for name, value in fresh.items():
                _run.log_scalar(f"{kind}.{name}", value, step)
            for curve in curves:
                curve(kind, step, fresh)

        def close(status: str) -> dict[str, float]:
            segment.update(end=_iso(time.time()), seconds=time.time() - started, status=status)
            for curve in curves:
                curve.close(status)
            return _cost(_run.info["segments"], num_tasks)

        try:
            curves.extend(_live_curves(observers, _run, run_id))
            result = body(callback)
        except BaseException as error:
            requeued = requeueing()
            _run.info.update(close("REQUEUED" if requeued else "FAILED"))
            if requeued:
                raise Requeued(error.code if isinstance(error, SystemExit) else -1) from error
            raise
        cost = close("COMPLETED")
        _run.info.update(cost)
        # numbers as plain floats (sacred would store numpy and torch scalars as jsonpickle blobs);
        # words, such as the run's collapse verdict, as they are
        return {**{k: v if isinstance(v, str) else float(v) for k, v in result.items()}, **cost}

    ex.main(main)
    options = {"--id": segment_id, "--capture": "sys", **{k: v for k, v in observers.items() if k not in LIVE}}
    try:
        return ex.run(options=options).result
    except Requeued as requeued:
        raise SystemExit(requeued.code) from requeued


def _live_curves(observers: Mapping[str, str], run: Any, run_id: str) -> list[Any]:
    """The live observers of one segment of the sacred ``run``, opened (``core.live``)."""
    study = run.experiment_info["name"]
    meta = run.config.get("study", {})
    label = str(meta.get("label", run_id))
    curves: list[Any] = []
    if "tensorboard" in observers:
        folder = Path(observers["tensorboard"], study, label.replace("/", "_"), run_id)
        curves.append(live.TensorBoardCurves(folder, run.config.get("params")))
    if "wandb" in observers:
        config = json.loads(json.dumps(run.config))  # plain dicts, not sacred's read-only ones
        curves.append(live.WandbCurves(observers["wandb"], run_id, label, study, config))
    return curves


def _cost(segments: list[dict[str, Any]], num_tasks: int) -> dict[str, float]:
    """Wall time over all segments; GPU-hours = GPUs x wall hours (0 on CPU); CPU-hours likewise,
    with the CPUs SLURM allotted or, on a machine of one's own, the threads the run computes on
    (two one-thread runs side by side on two cores are one CPU-hour per hour each, not two)."""
    import torch  # here, not at the top: the launcher imports this module and stays torch-free

    seconds = sum(s["seconds"] or 0.0 for s in segments)
    gpus = num_tasks if torch.cuda.is_available() else 0  # one GPU per DDP task
    cpus = num_tasks * int(os.environ.get("SLURM_CPUS_PER_TASK", torch.get_num_threads()))
    return {"wall_seconds": seconds, "gpus": float(gpus), "cpus": float(cpus),
            "gpu_hours": gpus * seconds / 3600, "cpu_hours": cpus * seconds / 3600}


def _versions() -> dict[str, Any]:
    """What sacred's dependency scan misses: the deep-learning stack and the devices."""
    import timm
    import torch
    import torchvision

    cuda = torch.cuda.is_available()
    return {"python": sys.version.split()[0], "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "timm": str(timm.__version__),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "cuda_available": cuda,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []}


def _has_commit(repo: Path) -> bool:
    """sacred raises on a repository without commits (its issue 915): capture git only if HEAD exists."""
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "HEAD"],
                              capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds")
