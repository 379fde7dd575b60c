"""Read one study's results folder back into pandas: what was planned, what ran, what it measured.

Three sources, each authoritative for one thing (layout: the ``studies`` package docstring):

* ``study.json``: the plan as last launched (axes with their value labels and paper numbers, the
  runs with their keys and seeds, the profile). It fixes the rows of every table and their order.
* the optuna ledger: one trial per attempt; its state is the truth about done / running / failed
  (a killed job's sacred status stays RUNNING), and a completed trial holds the final numbers.
* the sacred folders: config, metrics (curves), ``info.json`` (cost summed over requeue segments,
  versions) and ``run.json`` (git commit, host, times).

Nothing here writes: a report may be built while jobs are still appending to these files (a
``metrics.json`` caught half-written is read again). Folders are found relative to the results
folder first, so a results folder copied off a cluster still reads.
"""
from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from optuna.trial import FrozenTrial

from core.collapse import CollapseRule, is_collapsed
from studies.layout import PLAN, Attempt, Layout
from studies.ledger import STATE_NAMES, Ledger
from studies.spec import flatten

FINAL = ("knn_top1", "knn_top5", "student_knn_top1", "student_knn_top5", "linear_top1", "student_linear_top1",
         "loss", "target_entropy", "kl", "student_entropy")
COST = ("wall_seconds", "gpu_hours", "cpu_hours")
SAVED = ("saved_gpu_hours", "saved_cpu_hours")  # what an early stop (core.early_stop) did not spend
# Fixed, so that a frame of runs that logged nothing has the same dtypes as one of runs that did.
METRIC_DTYPES = {"run_key": "str", "run_id": "str", "attempt": "int64", "kind": "str", "metric": "str",
                 "step": "int64", "value": "float64"}
METRIC_COLUMNS = list(METRIC_DTYPES)
EXPORT_FORMATS = ("csv", "parquet")
# Where a final number was logged while training (for attempts that did not complete). Runs
# recorded before the trainer measured the student's k-NN or entropy have no student_* numbers: NaN.
_LOGGED_AS = {"knn_top1": ("knn", "top1"), "knn_top5": ("knn", "top5"),
              "student_knn_top1": ("knn", "student_top1"), "student_knn_top5": ("knn", "student_top5"),
              "linear_top1": ("knn", "linear_top1"), "student_linear_top1": ("knn", "student_linear_top1"),
              "loss": ("epoch", "loss"), "target_entropy": ("epoch", "target_entropy"), "kl": ("epoch", "kl"),
              "student_entropy": ("epoch", "student_entropy")}

_RUN_DTYPES = {**dict.fromkeys(("planned", "latest", "superseded", "counted", "collapsed", "collapse_recorded",
                                 "cost_recorded"), "bool"),
               **dict.fromkeys((*FINAL, *COST, *SAVED, "ln_k", "stopped_epoch"), "float64"),
               **dict.fromkeys(("trial", "attempt", "epochs_done"), "int64")}


class ReportError(Exception):
    """A results folder cannot be reported on; the message says why and what to run."""


@dataclass
class StudyResults:
    """One study's records as frames.

    ``runs``, one row per attempt: identity (``run_key``, ``run_id``, ``trial``, ``attempt``,
    ``label``, ``setting`` as an ordered categorical, ``axis.<name>`` value labels, ``seed``);
    standing (``state`` done / running / failed, ``planned``: in the current ``study.json``,
    ``latest`` / ``superseded``, ``counted``: used by the tables); results (``knn_top1``,
    ``knn_top5`` of the teacher, ``student_knn_top1``, ``student_knn_top5``: NaN for runs recorded
    before the student was measured, ``loss``, ``target_entropy``, ``kl``: final, or the last
    logged while not done;
    ``student_entropy`` h(P_s) (NaN before the trainer measured it); ``out_dim``, ``ln_k``,
    ``collapse`` mode and ``collapsed``, ``collapse_recorded``: the run's own verdict, rather than
    one computed here; ``epochs_done`` of ``epochs``, ``stopped_epoch`` if it stopped collapsed);
    cost (``wall_seconds``, ``gpu_hours``, ``cpu_hours``, ``cost_recorded``, and ``saved_gpu_hours``,
    ``saved_cpu_hours`` by an early stop: its untrained epochs at its mean epoch time); provenance
    (``start``, ``stop`` in UTC, ``host``, ``job_id``, ``git_commit``, ``git_dirty``,
    ``software``, ``devices``, ``error``, ``paper``, ``sacred_dir``, ``run_dir``); and
    ``config.<key>`` for every config value that differs between runs.

    ``metrics``, long: ``run_key, run_id, attempt, kind, metric, step, value`` (kind iteration /
    epoch / knn; each step once per attempt, its last logged value). ``configs``: run key -> its
    flat config (dotted keys).
    """

    name: str
    results_dir: Path
    plan: dict[str, Any]
    runs: pd.DataFrame
    metrics: pd.DataFrame
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def axes(self) -> list[dict[str, Any]]:
        return self.plan["axes"]

    @property
    def settings(self) -> list[str]:
        """The grid points' names in declared order."""
        return list(self.points)

    @property
    def points(self) -> dict[str, dict[str, str]]:
        """Setting -> its value label on each axis, in declared order."""
        return {setting_label(self.axes, point): point for point in grid(self.axes)}

    def planned(self, setting: str) -> int:
        """How many runs (seeds) the plan has for a setting."""
        return sum(setting_label(self.axes, run["axes"]) == setting for run in self.plan["runs"])

    @property
    def paper(self) -> dict[str, float | None]:
        """Setting -> the paper's number (None where it reports none)."""
        return {setting_label(self.axes, run["axes"]): run["paper"] for run in self.plan["runs"]}

    def latest(self) -> pd.DataFrame:
        """The latest attempt of every planned run: the rows tables and plots are made of."""
        return self.runs[self.runs["planned"] & self.runs["latest"]]

    def progress(self) -> dict[str, int]:
        """Planned runs by state (a run's state is its latest attempt's) and their total."""
        states = self.latest()["state"].value_counts()
        total = len(self.plan["runs"])
        counts = {state: int(states.get(state, 0)) for state in ("done", "running", "failed")}
        return {**counts, "missing": total - sum(counts.values()), "total": total}


def setting_label(axes: list[dict[str, Any]], labels: Mapping[str, str]) -> str:
    """A grid point's name: the value label on a one-axis study ("0.04->0.07"), else
    "a=1, b=2"."""
    if len(axes) == 1:
        return str(labels[axes[0]["name"]])
    return ", ".join(f"{a['name']}={labels[a['name']]}" for a in axes)


def grid(axes: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The grid points (axis name -> value label) in declared order: the product of the axes."""
    names = [a["name"] for a in axes]
    return [dict(zip(names, labels)) for labels in itertools.product(*(a["labels"] for a in axes))]


def default_results(name: str) -> Path:
    """Where ``python -m studies.run NAME`` writes by default."""
    return Path("runs") / name


def load_study(results_dir: str | Path, storage: str | None = None,
               rule: CollapseRule = CollapseRule()) -> StudyResults:
    """Read a results folder; ``storage`` overrides the ledger's location (an optuna URL or a
    journal file; default: the folder's ``ledger.journal``, else the one ``study.json`` names)."""
    results = Path(results_dir).absolute()
    plan = _read_json(Layout(results).plan)
    if plan is None:
        raise ReportError(f"{results}: no {PLAN}, so nothing was launched there; run "
                          f"`python -m studies.run NAME --results {results}` first, or give --results")
    trials = _trials(results, plan, storage)
    planned = {run["key"] for run in plan["runs"]}
    latest = {}
    for trial in trials:
        recorded = Attempt.of(trial)
        latest[recorded.run_key] = max(latest.get(recorded.run_key, 0), recorded.attempt)
    rows, metric_frames, configs = [], [], {}
    for trial in sorted(trials, key=lambda t: t.number):
        attempt = Attempt.of(trial)
        record = _sacred_record(results, attempt)
        metrics = _metrics_frame(attempt, record["metrics"])
        metric_frames.append(metrics)
        if record["config"]:
            configs[attempt.run_key] = flatten(record["config"]["dino"])
        rows.append(_attempt_row(plan, trial, record, metrics, configs.get(attempt.run_key, {}), rule,
                                 planned=attempt.run_key in planned, latest=attempt.attempt == latest[attempt.run_key]))
    runs = pd.DataFrame(rows, columns=_columns(plan)).astype(_RUN_DTYPES)  # typed also without any attempt
    settings = [setting_label(plan["axes"], point) for point in grid(plan["axes"])]
    runs["setting"] = pd.Categorical(runs["setting"], categories=settings, ordered=True)
    runs = _with_varying_config(runs, configs)
    metrics = _concat_metrics(metric_frames)
    return StudyResults(plan["study"], results, plan, runs, metrics, configs)


def curves(results: StudyResults) -> pd.DataFrame:
    """Each run's metrics across its attempts (a retry resumes the run: the latest attempt's value
    wins per step), with ``epoch``, the position in epochs (an iteration ``i`` of a run with ``I``
    iterations per epoch sits at ``(i + 1) / I``), and the run's label, setting and seed."""
    frame = results.metrics.sort_values("attempt", kind="stable").drop_duplicates(
        ["run_key", "kind", "metric", "step"], keep="last")
    per_epoch = _iterations_per_epoch(frame, results.configs)
    position = frame["step"].astype(float)
    iteration = frame["kind"] == "iteration"
    iterations = frame.loc[iteration, "run_key"].map(per_epoch).astype("float64")  # float also when empty
    position[iteration] = (frame.loc[iteration, "step"] + 1) / iterations
    frame = frame.assign(epoch=position).dropna(subset=["epoch"])
    runs = results.latest()[["run_key", "label", "setting", "seed", "state"]]
    return frame.merge(runs, on="run_key", how="inner").sort_values(["run_key", "kind", "metric", "step"])


def export(results: StudyResults, folder: Path, fmt: str) -> list[Path]:
    """Write the runs and metrics frames as ``runs.<fmt>`` and ``metrics.<fmt>``."""
    if fmt not in EXPORT_FORMATS:
        raise ReportError(f"--export {fmt}: choose one of {', '.join(EXPORT_FORMATS)}")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, frame in (("runs", results.runs), ("metrics", results.metrics)):
        path = folder / f"{stem}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        written.append(path)
    return written


# -- reading ----------------------------------------------------------------------------------------
def _read_json(path: Path, tries: int = 3) -> Any:
    """The file's JSON, or None if it does not exist; a file caught mid-rewrite (sacred rewrites
    ``metrics.json`` and ``run.json`` in place) is read again, then given up on."""
    for attempt in range(tries):
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            if attempt + 1 < tries:
                time.sleep(0.2)
    return None


def _trials(results: Path, plan: dict[str, Any], storage: str | None) -> list[FrozenTrial]:
    journal = Layout(results).journal
    url = storage or (str(journal) if journal.exists() else plan.get("storage", str(journal)))
    if "://" not in url and not Path(url).exists():
        raise ReportError(f"{results}: no ledger at {url}; give --storage URL if the study used another one")
    try:
        ledger = Ledger.load(url, plan["study"])
    except KeyError as error:
        raise ReportError(f"{url}: holds no study named {plan['study']!r}") from error
    return [t for t in ledger.trials() if Attempt.of(t).run_key]


def _sacred_record(results: Path, attempt: Attempt) -> dict[str, Any]:
    """The attempt's sacred files (None where missing: a job that never started has none)."""
    folder = Layout(results).sacred_run(str(attempt.run_id))
    if not folder.is_dir() and attempt.sacred_dir:
        folder = Path(attempt.sacred_dir)
    return {"folder": folder, **{name: _read_json(folder / f"{name}.json")
                                 for name in ("run", "config", "info", "metrics")}}


def _metrics_frame(attempt: Attempt, metrics: Mapping[str, Any] | None) -> pd.DataFrame:
    parts = []
    for name, series in (metrics or {}).items():
        kind, _, metric = name.partition(".")
        count = min(len(series["steps"]), len(series["values"]))
        if count:
            parts.append(pd.DataFrame({"kind": kind, "metric": metric, "step": series["steps"][:count],
                                       "value": pd.to_numeric(series["values"][:count], errors="coerce")}))
    if not parts:  # failed before its first metric, or not started: no sacred metrics at all
        return _no_metrics()
    frame = pd.concat(parts, ignore_index=True).drop_duplicates(["kind", "metric", "step"], keep="last")
    frame.insert(0, "run_key", attempt.run_key)
    frame.insert(1, "run_id", attempt.run_id)
    frame.insert(2, "attempt", attempt.attempt)
    return frame[METRIC_COLUMNS].astype(METRIC_DTYPES).reset_index(drop=True)


def _concat_metrics(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The attempts' metrics in one frame. Empty frames are left out: under pandas 3 one among typed
    frames turns every column to object (and the curves' arithmetic then fails)."""
    parts = [frame for frame in frames if len(frame)]
    return pd.concat(parts, ignore_index=True) if parts else _no_metrics()


def _no_metrics() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in METRIC_DTYPES.items()})


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _last(metrics: pd.DataFrame, kind: str, metric: str) -> float:
    values = metrics[(metrics["kind"] == kind) & (metrics["metric"] == metric)].sort_values("step")["value"]
    return float(values.iloc[-1]) if len(values) else math.nan


# -- one attempt ------------------------------------------------------------------------------------
def _columns(plan: dict[str, Any]) -> list[str]:
    return (["study", "run_key", "run_id", "trial", "attempt", "label", "setting"]
            + [f"axis.{a['name']}" for a in plan["axes"]]
            + ["seed", "state", "planned", "latest", "superseded", "counted", *FINAL, "out_dim", "ln_k",
               "collapse", "collapsed", "collapse_recorded", "epochs_done", "epochs", "stopped_epoch", *COST,
               "cost_recorded", *SAVED,
               "start", "stop", "host", "job_id", "git_commit", "git_dirty", "software", "devices", "error", "paper",
               "sacred_dir", "run_dir"])


def _attempt_row(plan: dict[str, Any], trial: FrozenTrial, record: dict[str, Any], metrics: pd.DataFrame,
                 config: Mapping[str, Any], rule: CollapseRule, planned: bool, latest: bool) -> dict[str, Any]:
    attrs = trial.user_attrs
    state = STATE_NAMES.get(trial.state, trial.state.name.lower())
    completed = state == "done"
    info, run = record["info"] or {}, record["run"] or {}
    result = (run.get("result") or {}) if completed else {}
    recorded = {**result, **attrs} if completed else {}  # the ledger's first, then sacred's result
    final = {name: _number(recorded.get(name)) for name in FINAL}
    for name, (kind, metric) in _LOGGED_AS.items():
        if math.isnan(final[name]):  # not completed: the last value the attempt logged
            final[name] = _last(metrics, kind, metric)
    out_dim = int(config.get("head.out_dim", 0))
    # the run's own verdict where it recorded one (with the rule it was recorded under), else this rule's
    own = recorded.get("collapse") if rule == CollapseRule() else None
    collapse = own if isinstance(own, str) else rule.classify(final["target_entropy"], final["kl"], out_dim)
    cost_source = info if all(k in info for k in COST) else attrs
    cost = {k: float(cost_source[k]) if cost_source.get(k) is not None else math.nan for k in COST}
    epoch_steps = metrics.loc[metrics["kind"] == "epoch", "step"]
    stopped = _number(recorded.get("stopped_epoch"))
    start, stop = _times(trial, info, run)
    repos = run.get("experiment", {}).get("repositories") or [{}]
    attempt = Attempt.of(trial)
    axes = attempt.axes
    return {
        "study": plan["study"], "run_key": attempt.run_key, "run_id": attempt.run_id,
        "trial": trial.number, "attempt": attempt.attempt, "label": attempt.label,
        "setting": setting_label(plan["axes"], axes) if all(a["name"] in axes for a in plan["axes"]) else None,
        **{f"axis.{a['name']}": axes.get(a["name"]) for a in plan["axes"]},
        "seed": attempt.seed, "state": state, "planned": planned, "latest": latest, "superseded": not latest,
        "counted": planned and latest and completed and math.isfinite(final["knn_top1"]),
        **final, "out_dim": out_dim or None, "ln_k": math.log(out_dim) if out_dim > 1 else math.nan,
        "collapse": collapse, "collapsed": is_collapsed(collapse), "collapse_recorded": isinstance(own, str),
        "epochs_done": int(epoch_steps.max()) if len(epoch_steps) else 0, "epochs": config.get("epochs"),
        "stopped_epoch": stopped, **cost, "cost_recorded": all(math.isfinite(v) for v in cost.values()),
        **_saved(cost, metrics, config.get("epochs", math.nan) - stopped),
        "start": start, "stop": stop, "host": run.get("host", {}).get("hostname"), "job_id": attrs.get("job_id"),
        "git_commit": repos[0].get("commit"), "git_dirty": repos[0].get("dirty"), **_software(info),
        "error": attrs.get("error"),
        "paper": attempt.paper, "sacred_dir": str(record["folder"]), "run_dir": attempt.run_dir,
    }


def _saved(cost: Mapping[str, float], metrics: pd.DataFrame, skipped: float) -> dict[str, float]:
    """GPU- and CPU-hours of the ``skipped`` epochs (NaN: none skipped) at the attempt's mean epoch
    time, on what it held while it trained (its recorded cost per wall-clock hour)."""
    seconds = metrics.loc[(metrics["kind"] == "epoch") & (metrics["metric"] == "epoch_seconds"), "value"].mean()
    wall = cost["wall_seconds"] if cost["wall_seconds"] > 0 else math.nan
    return {f"saved_{k}": cost[k] / wall * skipped * seconds for k in ("gpu_hours", "cpu_hours")}


def _times(trial: FrozenTrial, info: Mapping[str, Any], run: Mapping[str, Any]) -> tuple[Any, Any]:
    """First start and last end (UTC) over the attempt's segments; a running one ends at its
    latest heartbeat. Falls back on sacred's own times (UTC), then on the trial's."""
    segments = info.get("segments") or []
    start = segments[0].get("start") if segments else run.get("start_time")
    stop = (segments[-1].get("end") if segments else None) or run.get("stop_time") or run.get("heartbeat")
    start = start or trial.datetime_start
    stop = stop or trial.datetime_complete
    return _utc(start), _utc(stop)


def _software(info: Mapping[str, Any]) -> dict[str, str | None]:
    """The deep-learning stack and devices the attempt ran on (``info.json``'s ``versions``)."""
    versions = info.get("versions")
    if not versions:
        return {"software": None, "devices": None}
    stack = ", ".join(f"{name} {versions[name]}" for name in ("python", "torch", "torchvision", "timm")
                      if versions.get(name))
    return {"software": stack, "devices": ", ".join(versions.get("devices") or []) or "CPU"}


def _utc(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _with_varying_config(runs: pd.DataFrame, configs: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Add ``config.<key>`` for every setting that differs between runs (the seed aside): the
    values the runs really used, e.g. epochs=2 for the "100" of an axis mapped on profile tiny."""
    if not configs:
        return runs
    keys = sorted({k for c in configs.values() for k in c if k != "seed"})
    varying = [k for k in keys if len({json.dumps(c.get(k)) for c in configs.values()}) > 1]
    extra = {f"config.{k}": runs["run_key"].map(lambda key, k=k: configs.get(key, {}).get(k)) for k in varying}
    return runs.assign(**extra)


def _iterations_per_epoch(frame: pd.DataFrame, configs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Run key -> iterations per epoch, recovered exactly from an epoch's record
    (images_per_second = iterations x batch_size / epoch_seconds). NaN before the first epoch ends."""
    epoch = frame[(frame["kind"] == "epoch") & frame["metric"].isin(["images_per_second", "epoch_seconds"])]
    wide = epoch.pivot_table(index=["run_key", "step"], columns="metric", values="value").dropna()
    found: dict[str, float] = {}
    for (key, _), row in wide.iterrows():
        batch = configs.get(key, {}).get("batch_size")
        if batch and key not in found:
            found[key] = float(round(row["images_per_second"] * row["epoch_seconds"] / batch))
    return found
