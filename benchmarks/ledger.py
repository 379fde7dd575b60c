"""A study a thousand times larger: the studies engine's own costs on a synthetic ledger.

A cluster study can hold 10,000 runs. Training that many is not needed to see what the engine
costs at that size, so this writes the ledger directly: a study file of five axes (7 x 6 x 5 x
4 x 4 points) by three seeds, planned by ``studies.plan``, and for every run the trials
``studies.run`` and ``studies.job`` write, through the ledger's own API (attempts with the
launcher's attributes, the job's, intermediate k-NN values, results; some runs running, failed,
retried or missing). It is written once to a journal file and once to SQLite, and then each
figure is timed as the real commands take it: planning (``plan.expand``, in this process),
``python -m studies.run STUDY --dry-run`` and ``--status`` (whole commands, interpreter
included), and what one job does to the ledger (``Ledger.load``, read its trial, ``set_attrs``,
``report``, ``complete``, and the end-of-job "is anything still running?" check a SLURM job makes
before it writes the report), on a few RUNNING trials, each from a fresh storage as a new job
opens it. The dry run does not read the ledger, so it is timed once. The two ``--status`` tables
are compared (by digest): a database is asked only for the attributes the table shows
(``Ledger.trials``), a journal gives whole trials, and both must print the same.

The journal is written as one append of optuna's own entries (an fsync per entry would take
minutes and measure the disk), then given the snapshot that its writers, the launcher and the
jobs, keep beside it (``studies.journal``), as every later command finds it; the SQLite database
is a ``copy_study`` of it (without a sync per trial), which holds the same rows the entries would
have written one by one.
"""
from __future__ import annotations

import hashlib
import math
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend

from benchmarks.measure import _table, load
from benchmarks.study import _study_toml
from studies.layout import Layout

SEEDS = 3
AXES = [  # name, config key, values: 7 x 6 x 5 x 4 x 4 = 3,360 points, 10,080 runs with 3 seeds
    ("m", "teacher.momentum", [0.99, 0.992, 0.994, 0.995, 0.996, 0.998, 0.999]),
    ("c", "loss.center_momentum", [0.0, 0.5, 0.8, 0.9, 0.95, 0.99]),
    ("s", "loss.student_temp", [0.05, 0.08, 0.1, 0.12, 0.15]),
    ("lr", "optim.lr", [0.0002, 0.0005, 0.001, 0.002]),
    ("wd", "optim.weight_decay", [0.0, 0.01, 0.04, 0.1]),
]
FULL_RUNS = SEEDS * math.prod(len(values) for _, _, values in AXES)
TARGETS_S = {"plan": 5.0, "dry_run": 10.0, "status": 5.0, "job": 1.0}  # the limits
EVALS = 10  # k-NN evaluations a finished run reported (a 100-epoch run evaluated every 10)
JOBS = 3  # jobs timed per storage
STUDY = "bench_ledger"


def axis_sizes(runs: int) -> list[int]:
    """How many values of each axis give at least ``runs`` runs, the axes grown in turn (all of
    them for the full study)."""
    sizes = [1] * len(AXES)
    while SEEDS * math.prod(sizes) < runs:
        growable = [i for i, (_, _, values) in enumerate(AXES) if sizes[i] < len(values)]
        if not growable:
            break
        sizes[min(growable, key=lambda i: sizes[i])] += 1
    return sizes


def study_file(folder: Path, runs: int) -> Path:
    axes = [(name, key, values[:n]) for (name, key, values), n in zip(AXES, axis_sizes(runs))]
    path = folder / f"{STUDY}.toml"
    path.write_text(_study_toml(SEEDS, {}, axes))
    return path


class _Entries(BaseJournalBackend):
    """optuna's journal entries kept in memory, to be appended to a file in one write."""

    def __init__(self):
        self.logs: list[dict[str, Any]] = []

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        return iter(self.logs[log_number_from:])

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs.extend(logs)


def _fate(index: int) -> str:
    """What happened to run ``index``: mostly done, a few of each other state, spread evenly."""
    slot = index % 100
    return ("missing" if slot < 5 else "running" if slot < 10 else "failed" if slot < 13
            else "retried" if slot < 16 else "done")


@dataclass
class Synthetic:
    storage: JournalStorage  # in memory, over ``entries``
    entries: list[dict[str, Any]]  # optuna's journal entries, in order
    trials: int
    running: list[int]  # the numbers of the RUNNING trials


def synthetic_ledger(runs: Sequence[Any], results: Path) -> Synthetic:
    """The ledger of ``runs`` (``plan.Run``) in memory, as the launcher and the jobs write it."""
    from studies.ledger import Ledger  # the studies engine: optional for the other sections

    backend = _Entries()
    storage = JournalStorage(backend)
    study = optuna.create_study(storage=storage, study_name=STUDY, direction="maximize")
    with warnings.catch_warnings():  # experimental since optuna 3.2, as studies.ledger says
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["knn_top1"])
    ledger, running = Ledger(study), []
    for index, run in enumerate(runs):
        fate = _fate(index)
        if fate == "missing":
            continue
        for attempt in (1, 2) if fate == "retried" else (1,):
            run_id = f"{run.key}-a{attempt}"
            number = ledger.new_attempt({
                "run_key": run.key, "run_id": run_id, "attempt": attempt, "label": run.label,
                "axes": dict(run.axes), "seed": run.seed, "paper": run.paper, "profile": "tiny",
                "cluster": "slurm", "results_dir": str(results), "run_dir": str(Layout(results).run_dir(run.name)),
                "sacred_dir": str(Layout(results).sacred_run(run_id)), "launcher_host": "login1",
                "launcher_pid": 4242, "launcher_pid_start": "123456"})
            job_id = f"{1000 + index // 1000}_{index % 1000}"
            ledger.set_attrs(number, {"job_id": job_id, "submitit_dir": str(Layout(results).submitit / "0")})
            ledger.set_attrs(number, {"job_id": job_id, "worker_host": f"node{index % 64:03d}",
                                      "worker_pid": 1000 + index, "worker_pid_start": str(777 + index)})
            finished = fate == "done" or (fate == "retried" and attempt == 2)
            for step in range(1, (EVALS if finished else EVALS // 2) + 1):
                ledger.report(number, 10 * step, 50.0 + step + (index % 7) / 10)
            if finished:
                ledger.complete(number, 60.0 + (index % 13) / 10, _result_attrs(index))
            elif fate == "running":
                running.append(number)
            else:
                ledger.fail(number, "RuntimeError: CUDA error: an illegal memory access was encountered")
    return Synthetic(storage, backend.logs, len(study.trials), running)


def _result_attrs(index: int) -> dict[str, Any]:
    """What a finished job keeps as its trial's attributes (``studies.job``'s result attributes)."""
    top1 = 60.0 + (index % 13) / 10
    return {"knn_top1": top1, "knn_top5": top1 + 20, "student_knn_top1": top1 - 1, "student_knn_top5": top1 + 19,
            "linear_top1": top1 + 5, "student_linear_top1": top1 + 4, "loss": 3.2, "target_entropy": 5.1,
            "kl": 0.3, "student_entropy": 5.4, "collapse": "none", "wall_seconds": 86400.0, "gpu_hours": 192.0,
            "cpu_hours": 1920.0}


def write(ledger: Synthetic, storage: str) -> float:
    """The synthetic ledger into ``storage``; the seconds it took."""
    start = time.perf_counter()
    if "://" in storage:
        from sqlalchemy import event

        database = optuna.storages.RDBStorage(storage)
        # without a sync to disk per trial: this is the benchmark's set-up, not a figure of it
        event.listen(database.engine, "connect", lambda connection, _: connection.execute("PRAGMA synchronous=OFF"))
        database.engine.dispose()
        optuna.copy_study(from_study_name=STUDY, from_storage=ledger.storage, to_storage=database)
        database.engine.dispose()
    else:
        JournalFileBackend(storage).append_logs(ledger.entries)
    return time.perf_counter() - start


def one_job(storage: str, number: int) -> dict[str, float]:
    """The ledger reads and writes of one job that finishes trial ``number``, timed by step."""
    from optuna.trial import TrialState

    from studies.ledger import Ledger

    times, start = {}, time.perf_counter()
    ledger = Ledger.load(storage, STUDY)
    times["load_s"] = time.perf_counter() - start
    mark = time.perf_counter()
    assert ledger.trial(number).state == TrialState.RUNNING, number
    times["read_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    ledger.set_attrs(number, {"job_id": "9999_0", "worker_host": "node999", "worker_pid": 99,
                              "worker_pid_start": "99"})
    for step in range(EVALS // 2 + 1, EVALS + 1):
        ledger.report(number, 10 * step, 55.0 + step)
    ledger.complete(number, 61.0, _result_attrs(number))
    times["write_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    ledger.any_running()  # what studies.autoreport asks on SLURM
    times["report_check_s"] = time.perf_counter() - mark
    times["job_s"] = time.perf_counter() - start
    return times


def _command(args: list[str], repo: Path, timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "studies.run", *args], cwd=repo, capture_output=True, text=True,
                          timeout=timeout, check=False)
    out = {"s": time.perf_counter() - start, "ok": proc.returncode == 0, "lines": proc.stdout.count("\n"),
           "loadavg": load()}
    if proc.returncode != 0:
        out["error"] = (proc.stderr or proc.stdout).strip()[-600:]
    else:
        out["summary"] = next((line for line in proc.stdout.splitlines() if line.startswith("progress:")), "")
        out["digest"] = hashlib.sha256(proc.stdout.encode()).hexdigest()[:16]  # to compare with the other storage's
    return out


def bench_ledger(n_runs: int = FULL_RUNS, timeout: float = 1800) -> dict[str, Any]:
    """Every figure at ``n_runs`` runs (at least; the grid's size), for a journal file and SQLite."""
    from studies import journal, plan, spec

    repo = Path(__file__).resolve().parent.parent
    out: dict[str, Any] = {"targets_s": TARGETS_S, "storages": {}}
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        folder = Path(tmp)
        path = study_file(folder, n_runs)
        start = time.perf_counter()
        runs = plan.expand(spec.load(str(path)), "tiny")
        out.update(runs=len(runs), axes=axis_sizes(n_runs), seeds=SEEDS, plan_s=time.perf_counter() - start,
                   plan_loadavg=load())
        print(f"[ledger] planned {len(runs)} runs in {out['plan_s']:.2f} s", flush=True)
        results = folder / "results"
        out["dry_run"] = _command([str(path), "--dry-run", "--results", str(results), "--cluster", "slurm"],
                                  repo, timeout)
        print(f"[ledger] --dry-run {out['dry_run']['s']:.2f} s", flush=True)
        synthetic = synthetic_ledger(runs, results)
        out["trials"] = synthetic.trials
        for kind, storage in (("journal", str(Layout(folder).journal)),
                              ("sqlite", f"sqlite:///{folder / 'ledger.db'}")):
            row: dict[str, Any] = {"storage": kind, "write_s": write(synthetic, storage)}
            if kind == "journal":
                journal.Journal(storage).renew_snapshot()
            file = Path(storage.split(":///")[-1])
            row["bytes"] = file.stat().st_size
            if kind == "journal":
                row["entries"] = len(synthetic.entries)
            row["status"] = _command([str(path), "--status", "--results", str(results), "--storage", storage,
                                      "--cluster", "slurm"], repo, timeout)
            jobs = [one_job(storage, number) for number in synthetic.running[:JOBS]]
            row["jobs"] = jobs
            row["job"] = {key: statistics.median(j[key] for j in jobs) for key in jobs[0]} if jobs else {}
            row["loadavg"] = load()
            out["storages"][kind] = row
            print(f"[ledger] {kind}: --status {row['status']['s']:.2f} s, one job "
                  f"{row['job'].get('job_s', math.nan):.2f} s", flush=True)
    return out


def ledger_report(r: dict[str, Any]) -> str:
    t = r["targets_s"]
    lines = [f"a study of {r['runs']} runs ({' x '.join(map(str, r['axes']))} points x {r['seeds']} seeds, "
             f"{r['trials']} trials): plan {r['plan_s']:.2f} s (target {t['plan']:g}), --dry-run "
             f"{r['dry_run']['s']:.2f} s (target {t['dry_run']:g}){'' if r['dry_run']['ok'] else ' FAILED'}, "
             f"load {r['plan_loadavg'][0]}"]
    rows = []
    for kind, s in r["storages"].items():
        job = s["job"]
        cells = [kind, f"{s['bytes'] / 2**20:.1f} MiB", f"{s['write_s']:.1f}",
                 f"{s['status']['s']:.2f}" + ("" if s["status"]["ok"] else " FAILED")]
        cells += [f"{job[k]:.3f}" if k in job else "-" for k in ("load_s", "read_s", "write_s", "report_check_s",
                                                                "job_s")]
        rows.append(cells + [str(s["loadavg"][0])])
    lines.append(_table(["storage", "size", "write s", f"--status s (<{t['status']:g})", "job: load s", "read s",
                         "write s", "report check s", f"job s (<{t['job']:g})", "load"], rows))
    tables = [s["status"].get("digest") for s in r["storages"].values()]
    if None not in tables:  # each command printed its table (results saved before digests hold none)
        lines.append(f"--status: {'the same table' if len(set(tables)) == 1 else 'DIFFERENT tables'} from each storage")
    return "\n".join(lines)
