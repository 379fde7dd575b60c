"""Results folders written by hand, the way the studies engine writes one (``study.json``, an
optuna journal ledger through ``studies.ledger``, sacred folders with run/config/metrics/info
JSON), so that the reports' tests pin numbers without training anything; and a stand-in for the
reference k-NN numbers, which cost a minute of CPU each on tiny's k-NN config.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest

from core.profiles import profile_config
from reports import references
from studies.ledger import Ledger

K = 64  # head.out_dim of every hand-made run: ln K = 4.1589
IPE = 2  # iterations per epoch: batch 64, images_per_second 12.8, epoch_seconds 10


# -- reference k-NN numbers by hand -----------------------------------------------------------------
MEASURED: list[dict] = []  # every config the stand-in below was asked to measure


def measure_by_hand(config: dict) -> dict:
    """Stand-in for ``core.baselines``: a random network's top-1 is 54 + the patch size (62 on
    tiny's patch 8), raw pixels 83.5, so a test reads which config each number came from; data
    that is not there fails, as it does for real."""
    MEASURED.append(config)
    if not Path(config["data.path"]).exists():
        raise FileNotFoundError(f"no Fashion-MNIST in {config['data.path']}")
    return {"random_init": {"top1": 54.0 + config["backbone.patch_size"], "top5": 90.0},
            "raw_pixels": {"top1": 83.5, "top5": 98.0}}


@pytest.fixture(autouse=True, scope="module")
def baselines_by_hand():
    """Hand-made studies record tiny's full k-NN config, which takes a minute of CPU per baseline
    to measure for real (tests/reports/test_baselines.py does, on a micro config)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(references, "measure", measure_by_hand)
        yield


# -- writing a results folder by hand ---------------------------------------------------------------
def run_key(study: str, labels: dict, seed: int) -> str:
    return hashlib.sha256(json.dumps([study, labels, seed], sort_keys=True).encode()).hexdigest()[:12]


def write_results(results: Path, name: str, axes: list[dict], seeds: list[int], attempts: list[dict],
                profile: str = "tiny", base: dict | None = None) -> Path:
    """A results folder as ``python -m studies.run`` leaves it.

    ``axes``: ``{"name", "key", "labels", "paper", "set": {label: config overrides}}``; ``base``:
    overrides every run shares (on profile tiny's config, whatever ``profile`` the plan names).
    ``attempts``, in the order they happened: ``{"labels", "seed", "state": done|failed|running,
    "top1", "top5", "student_top1", "student_top5" (left out: recorded before the trainer measured
    the student), "h", "kl", "hs" (h(P_s), left out: not measured), "collapse" (the run's own
    verdict, for the ledger), "result" (sacred's run.json result), "error" (of a failed attempt),
    "cpu_hours", "epochs": (first, last) logged, "stale": bool}``.
    """
    results.mkdir(parents=True)
    plan_runs = []
    for labels_tuple in itertools.product(*(a["labels"] for a in axes)):
        labels = dict(zip((a["name"] for a in axes), labels_tuple))
        paper_axis = next((a for a in axes if a.get("paper")), None)
        paper = paper_axis["paper"][paper_axis["labels"].index(labels[paper_axis["name"]])] if paper_axis else None
        for seed in seeds:
            label = " ".join(f"{k}={v}" for k, v in labels.items()) + f" seed={seed}"
            plan_runs.append({"key": run_key(name, labels, seed), "label": label, "axes": labels, "seed": seed,
                              "paper": paper, "name": label.replace(" ", "_")})
    plan = {"study": name, "file": f"{name}.toml", "description": f"hand-made study {name}",
            "reference": "Caron et al. 2021 (DINO), hand-copied numbers", "metric": "knn_top1",
            "direction": "maximize", "profile": profile, "cluster": "local",
            "storage": str(results / "ledger.journal"),
            "axes": [{k: a.get(k) for k in ("name", "key", "labels", "paper")} for a in axes], "runs": plan_runs}
    (results / "study.json").write_text(json.dumps(plan))
    ledger = Ledger.create(str(results / "ledger.journal"), name, "maximize", "knn_top1")
    counts: dict[str, int] = {}
    for spec in attempts:
        labels, seed = spec["labels"], spec["seed"]
        key = "0000stale000" if spec.get("stale") else run_key(name, labels, seed)
        counts[key] = counts.get(key, 0) + 1
        attempt = counts[key]
        run_id = f"{key}-a{attempt}"
        overrides = {k: v for a in axes for k, v in a["set"][labels[a["name"]]].items()}
        config = profile_config("tiny", {"head.out_dim": K, "epochs": 3, "batch_size": 64, **(base or {}),
                                         **overrides, "seed": seed}).to_dict()
        label = " ".join(f"{k}={v}" for k, v in labels.items()) + f" seed={seed}"
        sacred = results / "sacred" / run_id
        number = ledger.new_attempt({"run_key": key, "run_id": run_id, "attempt": attempt, "label": label,
                                     "axes": labels, "seed": seed, "paper": None, "profile": profile,
                                     "cluster": "local", "results_dir": str(results),
                                     "run_dir": str(results / "runs" / label), "sacred_dir": str(sacred),
                                     "job_id": "1"})
        write_sacred(sacred, config, spec)
        cost = {"wall_seconds": spec.get("cpu_hours", 0.5) * 1800, "gpu_hours": 0.0,
                "cpu_hours": spec.get("cpu_hours", 0.5)}
        if spec["state"] == "done":
            h, kl = spec.get("h", 2.0), spec.get("kl", 0.5)
            student = {f"student_knn_{k}": spec[f"student_{k}"] for k in ("top1", "top5") if f"student_{k}" in spec}
            recorded = {k: spec[k] for k in ("collapse", "linear_top1", "student_linear_top1") if k in spec}
            ledger.complete(number, spec["top1"], {"knn_top1": spec["top1"], "knn_top5": spec["top5"], **student,
                                                   "loss": h + kl, "target_entropy": h, "kl": kl, **recorded, **cost})
        elif spec["state"] == "failed":
            ledger.fail(number, spec.get("error", "NonFiniteLossError: loss is nan at epoch 2"))
    return results


def write_sacred(folder: Path, config: dict, spec: dict) -> None:
    """run.json, config.json, metrics.json and info.json of one attempt."""
    folder.mkdir(parents=True)
    first, last = spec.get("epochs", (1, 3))
    h, kl = spec.get("h", 2.0), spec.get("kl", 0.5)
    metrics: dict[str, dict] = {}

    def log(name: str, step: int, value: float) -> None:
        series = metrics.setdefault(name, {"steps": [], "values": [], "timestamps": []})
        series["steps"].append(step)
        series["values"].append(value)
        series["timestamps"].append("2026-01-01T00:00:00")

    student = [("student_entropy", spec["hs"])] if "hs" in spec else []
    for epoch in range(first, last + 1):
        for i in range((epoch - 1) * IPE, epoch * IPE):
            for metric, value in (("loss", h + kl + 1 / (i + 1)), ("target_entropy", h), ("kl", kl), *student):
                log(f"iteration.{metric}", i, value)
        for metric, value in (("loss", h + kl), ("target_entropy", h), ("kl", kl), *student, ("epoch_seconds", 10.0),
                              ("images_per_second", IPE * 64 / 10.0)):
            log(f"epoch.{metric}", epoch, value)
    if spec["state"] == "done":
        for name in ("top1", "top5", "student_top1", "student_top5"):
            if name in spec:
                log(f"knn.{name}", last, spec[name])
    for name, series in spec.get("extra_metrics", {}).items():  # e.g. a step logged twice (kill + resume)
        for step, value in series:
            log(name, step, value)
    status = {"done": "COMPLETED", "failed": "FAILED", "running": "RUNNING"}[spec["state"]]
    cost = {"wall_seconds": spec.get("cpu_hours", 0.5) * 1800, "gpus": 0.0, "cpus": 2.0, "gpu_hours": 0.0,
            "cpu_hours": spec.get("cpu_hours", 0.5)}
    segment = {"id": folder.name, "job_id": "1", "host": "testhost", "start": "2026-01-01T10:00:00+00:00",
               "end": None if status == "RUNNING" else "2026-01-01T10:30:00+00:00",
               "seconds": None if status == "RUNNING" else 1800.0, "status": status}
    info = {"segments": [segment], "versions": {"python": "3.11.7", "torch": "2.15.0", "torchvision": "0.29.2",
                                                "timm": "1.0.31", "devices": []}}
    if status != "RUNNING":
        info.update(cost)
    files = {
        "run.json": {"status": status, "start_time": "2026-01-01T10:00:00", "heartbeat": "2026-01-01T10:20:00",
                     "stop_time": None if status == "RUNNING" else "2026-01-01T10:30:00",
                     "host": {"hostname": "testhost"}, "result": spec.get("result"),
                     "experiment": {"repositories": [{"commit": "c0ffee1234", "dirty": False}]}},
        "config.json": {"dino": config, "study": {}, "seed": config["seed"]},
        "metrics.json": metrics, "info.json": info,
    }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content))


M_AXIS = {"name": "m", "key": "loss.center_momentum", "labels": ["0.9", "0.99", "0.999"], "paper": [69.7, 69.4, 0.1],
          "set": {"0.9": {"loss.center_momentum": 0.9}, "0.99": {"loss.center_momentum": 0.99},
                  "0.999": {"loss.center_momentum": 0.999}}}


# -- a grid of two axes, every run finished: which factor matters -----------------------------------
TAU_AXIS = {"name": "tau", "key": "loss.teacher_temp", "labels": ["0.04", "0.05", "0.07"], "paper": None,
            "set": {t: {"loss.teacher_temp": float(t)} for t in ("0.04", "0.05", "0.07")}}
CENTER_AXIS = {"name": "m", "key": "loss.center_momentum", "labels": ["0.9", "0.99"], "paper": None,
               "set": {m: {"loss.center_momentum": float(m)} for m in ("0.9", "0.99")}}


def grid_results(results: Path, name: str, axes: list[dict], top1: dict[tuple[str, ...], list[float]]) -> Path:
    """A finished study of ``axes``: ``top1[(its value on each axis)]`` lists the k-NN top-1 of
    seeds 0, 1, ... of that grid point (each grid point as many)."""
    names = [a["name"] for a in axes]
    attempts = [{"labels": dict(zip(names, point)), "seed": seed, "state": "done", "top1": value, "top5": 95.0}
                for point, values in top1.items() for seed, value in enumerate(values)]
    return write_results(results, name, axes, list(range(len(next(iter(top1.values()))))), attempts)
