"""What the studies engine adds to its runs' own time, measured on a real study of short runs."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.measure import QUICK_SHAPES, load

# -- study overhead ------------------------------------------------------------------------------
STUDY_RUN_SHAPES = {  # a short but real run: the tiny model on 2,048 images, one epoch, small k-NN
    "epochs": 1, "optim.warmup_epochs": 0, "data.train_subset": 2048, "log_every": 4,
    "eval.max_memory": 5000, "eval.max_queries": 1000}
STUDY_QUICK_SHAPES = {**{k: v for k, v in QUICK_SHAPES.items()}, "epochs": 1, "optim.warmup_epochs": 0,
                      "data.train_subset": 256, "eval.max_memory": 1000, "eval.max_queries": 200}


def _toml_value(value: Any) -> str:
    return json.dumps(value)  # numbers, strings, booleans and lists read the same in TOML


def _study_toml(seeds: int, overrides: dict[str, Any], axes: list[tuple[str, str, list[Any]]]) -> str:
    lines = ['description = "benchmark: study overhead"', 'profile = "tiny"', 'metric = "knn_top1"',
             f"seeds = {seeds}", "", "[set]"]
    lines += [f'"{k}" = {_toml_value(v)}' for k, v in overrides.items()]
    for name, key, values in axes:
        lines += ["", "[[axes]]", f'name = "{name}"', f'key = "{key}"', f"values = {_toml_value(values)}"]
    return "\n".join(lines) + "\n"


def _run_train_seconds(results: Path) -> list[dict[str, Any]]:
    """Each finished run's own training time (the trainer's ``train_seconds``) and its job's wall
    time, read back from the sacred folders of the study's results."""
    runs = []
    for run_json in sorted(results.glob("sacred/*/run.json")):
        try:
            record = json.loads(run_json.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        result = record.get("result") or {}
        if not isinstance(result, dict) or "train_seconds" not in result:
            continue
        info = {}
        info_json = run_json.with_name("info.json")
        if info_json.exists():
            info = json.loads(info_json.read_text())
        runs.append({"run": run_json.parent.name, "train_seconds": float(result["train_seconds"]),
                     "job_wall_seconds": info.get("wall_seconds", result.get("wall_seconds"))})
    return runs


def bench_study(n_runs: int, grid_runs: int, quick: bool, timeout: float) -> dict[str, Any]:
    """Wall time of ``python -m studies.run`` for ``n_runs`` short runs minus the runs' own
    training time; and the time to plan and dry-run a ``grid_runs``-run grid."""
    if importlib.util.find_spec("studies") is None or importlib.util.find_spec("studies.run") is None:
        return {"skipped": "the studies engine (studies/run.py) is not importable"}
    repo = Path(__file__).resolve().parent.parent
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        tmp_path = Path(tmp)
        # 1. N short runs, launched locally one after another
        study = tmp_path / "bench_overhead.toml"
        shapes = STUDY_QUICK_SHAPES if quick else STUDY_RUN_SHAPES
        study.write_text(_study_toml(n_runs, shapes, [("m", "teacher.momentum", [0.99])]))
        results = tmp_path / "results"
        command = [sys.executable, "-m", "studies.run", str(study), "--results", str(results),
                   "--cluster", "local", "--max-parallel", "1"]  # one at a time: wall vs the sum of runs
        print(f"[study] {n_runs} runs: {' '.join(command[1:])}", flush=True)
        start_load = load()
        start = time.perf_counter()
        try:
            proc = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"skipped": f"studies.run did not finish {n_runs} runs within {timeout:.0f} s"}
        wall = time.perf_counter() - start
        runs = _run_train_seconds(results)
        if proc.returncode != 0 or len(runs) != n_runs:
            return {"skipped": f"studies.run exited {proc.returncode} with {len(runs)}/{n_runs} runs "
                               f"recorded: {(proc.stderr or proc.stdout).strip()[-600:]}"}
        train = sum(r["train_seconds"] for r in runs)
        job_walls = [r["job_wall_seconds"] for r in runs if r["job_wall_seconds"] is not None]
        out.update({
            "runs": n_runs, "run_shapes": shapes, "wall_s": wall, "train_s": train,
            "overhead_s": wall - train, "overhead_per_run_s": (wall - train) / n_runs,
            "overhead_fraction": (wall - train) / train if train > 0 else None,
            "per_run": runs,
            # where the overhead goes: outside the jobs (launcher) and inside them (start-up,
            # data loading, model building, recording)
            "launcher_overhead_s": wall - sum(job_walls) if len(job_walls) == n_runs else None,
            "in_job_overhead_s": sum(job_walls) - train if len(job_walls) == n_runs else None,
            "loadavg_start": start_load, "loadavg": load()})
        print(f"[study] wall {wall:.1f} s, training {train:.1f} s: "
              f"{(wall - train) / n_runs:.2f} s per run", flush=True)

        # 2. plan and dry-run a grid of grid_runs runs (10 x 10 points x grid_runs/100 seeds)
        seeds = max(1, grid_runs // 100)
        grid = tmp_path / "bench_grid.toml"
        grid.write_text(_study_toml(seeds, {}, [
            ("m", "teacher.momentum", [round(0.99 + 0.001 * i, 4) for i in range(10)]),
            ("c", "loss.center_momentum", [round(0.05 * i, 2) for i in range(10)])]))
        from studies import plan, spec  # optional: the studies engine may be absent
        start = time.perf_counter()
        planned = plan.expand(spec.load(str(grid)), "tiny")
        plan_s = time.perf_counter() - start
        dry = [sys.executable, "-m", "studies.run", str(grid), "--dry-run", "--results",
               str(tmp_path / "grid"), "--cluster", "local"]
        start = time.perf_counter()
        proc = subprocess.run(dry, cwd=repo, capture_output=True, text=True, timeout=timeout, check=False)
        dry_s = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import studies.run"], cwd=repo, capture_output=True, check=False,
                       timeout=timeout)
        import_s = time.perf_counter() - start
        out.update({"grid_runs": len(planned), "plan_s": plan_s, "dry_run_s": dry_s,
                    "dry_run_ok": proc.returncode == 0, "dry_run_lines": proc.stdout.count("\n"),
                    "cli_start_s": import_s, "dry_run_loadavg": load()})
        if proc.returncode != 0:
            out["dry_run_error"] = (proc.stderr or proc.stdout).strip()[-600:]
        print(f"[study] plan {len(planned)} runs {plan_s:.2f} s, dry-run {dry_s:.2f} s "
              f"(of which interpreter + imports {import_s:.2f} s)", flush=True)
    return out


