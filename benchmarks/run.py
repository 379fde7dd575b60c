"""``python -m benchmarks.run [--quick] [--only train,knn,study] [--set KEY=VALUE]``

Every figure is measured in this one invocation, on this machine, and written to
``benchmarks/results/<timestamp>.json`` (or ``--out``) as well as printed as a table:

- ``peak``: the matmul throughput of the device per precision (a large square matmul), the
  denominator of every utilisation figure;
- ``train``: the trainer's own step (``core.train.Trainer.step``) for the ``tiny`` profile on CPU in
  several speed variants (``plain`` = eager fp32, the reference point; ``bf16``; ``+compile``),
  and, where a GPU is present, ViT-S/16 with 2x224 + 8x96 crops at batch 64 and 128 (the
  ``vits16_imagenet`` profile on random uint8 images): seconds per iteration, images per second,
  a per-phase breakdown (timed through the step's timer hook), FLOPs counted with
  ``torch.utils.flop_counter.FlopCounterMode``, model FLOP utilisation against the peak of the
  precision used, and peak memory of one step (RSS on CPU, allocated bytes on GPU);
- ``knn``: feature extraction rate of the teacher backbone on eval views, classification time
  of 60k x 10k random features, and peak memory against ``eval.chunk_size``;
- ``study``: wall time of ``python -m studies.run`` for N short runs (12 by default) minus the
  runs' own training time, and the time to plan and dry-run a 1,000-run grid. About 7 s of it
  is paid once per study (the launcher's and the first run's start-up, the report at the end),
  so the per-run figure falls with N; ``--study-runs N`` to see it;
- ``loader``: images per second per CPU core that the ImageFolder loader decodes and crops
  (2x224 + 8x96 views of 500x375 JPEGs, one thread), and the loader workers an 8-GPU node
  needs at the ViT-S/16 step rate (``benchmarks/loader.py``);
- ``learn`` (only with ``--only learn``): whole trainings of the profile and of its plain fp32
  eager twin for two seeds, to show the fast path learns the same (k-NN top-1 within seed noise).

The load average (``os.getloadavg``) is recorded next to each measurement: on a shared machine
other processes slow everything down, and a noisy figure should be visibly noisy. Variants are
timed in interleaved rounds (one step of each in turn) so that load changes hit them alike; step
times are reported as the median and the best (fastest) step, and speed-ups and utilisation both
ways: the best step is the one least disturbed by other processes.

``--quick`` runs micro shapes and few iterations: a smoke test of every figure, not a measurement.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import importlib.util
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.loader import bench_loader, loader_report
from core import cli, preflight
from core.config import ConfigError, DINOConfig
from core.data import FASHION_MNIST_STATS, IMAGENET_STATS, DataNotFoundError, DataSplits, TensorImageDataset
from core.distributed import DistEnv
from core.evaluate import extract_features
from core.knn import knn_accuracy
from core.model import float32_attention
from core.profiles import profile_config
from core.train import PHASES, Trainer

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("peak", "train", "knn", "study", "loader")
OPT_IN = ("learn",)  # whole trainings: only when named in --only
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"precision": "fp32", "compile": False},  # the reference point of every speed-up
    "bf16": {"precision": "bf16", "compile": False},
    "fp16": {"precision": "fp16", "compile": False},
    "bf16+compile": {"precision": "bf16", "compile": True},
    "fp32+compile": {"precision": "fp32", "compile": True},
    # bf16 as the trainer ran it before attention was kept in fp32 on CPU (core.model.float32_attention)
    "bf16/bf16-attention": {"precision": "bf16", "compile": False},
}
BF16_ATTENTION = {"bf16/bf16-attention"}
# Micro shapes for --quick: every code path, a fraction of the time.
QUICK_SHAPES = {"backbone.depth": 1, "backbone.embed_dim": 32, "backbone.num_heads": 2,
                "head.hidden_dim": 64, "head.bottleneck_dim": 32, "head.out_dim": 64,
                "batch_size": 32}
TINY_MODEL_PHASES = ("teacher", "student_forward", "loss", "backward")  # FLOPs that count as model FLOPs


# -- measuring helpers ---------------------------------------------------------------------------
def load() -> list[float]:
    """1, 5 and 15 minute load averages; compare them with the number of cores."""
    return [round(x, 2) for x in os.getloadavg()]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Linux resets the process's peak RSS (VmHWM) when "5" is written to clear_refs."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    return _proc_status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it otherwise), so that the peak RSS of
    the next block, above the RSS at its start, is the memory the block itself needs."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, Any]]:
    """Peak memory while the block runs: allocated bytes on a GPU, resident set size on CPU.
    ``delta_bytes`` is the peak above what was held when the block started."""
    out: dict[str, Any] = {}
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        out["kind"] = "cuda_max_memory_allocated"
    else:
        resettable = _reset_peak_rss()
        before = _proc_status("VmRSS") or 0
        out["kind"] = "rss" if resettable else "rss_lifetime_peak"
    yield out
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _peak_rss()
    out.update(peak_bytes=int(peak), before_bytes=int(before), delta_bytes=int(max(peak - before, 0)))


class PhaseTimer:
    """The step's timer hook: wall time per phase, synchronising a GPU at each phase boundary."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        sync(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            sync(self.device)
            self.seconds[phase] += time.perf_counter() - start


class FlopCounter:
    """The step's timer hook used to count FLOPs per phase (one FlopCounterMode per phase)."""

    def __init__(self):
        self.flops: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        mode = FlopCounterMode(display=False)
        with mode:
            yield
        self.flops[phase] += mode.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, seconds: float,
                trials: int = 8) -> dict[str, Any]:
    """The best of ``trials`` short timings of repeated n x n x n matmuls, in FLOP/s: on a shared
    machine the best short trial is the one least disturbed by other processes."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    a @ b
    sync(device)
    reps = max(1, int(seconds / trials / max(time.perf_counter() - start, 1e-6)))
    rates = []
    for _ in range(trials):
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        rates.append(2 * n ** 3 * reps / (time.perf_counter() - start))
    return {"flops_per_s": max(rates), "median_flops_per_s": statistics.median(rates), "n": n,
            "reps": reps, "trials": trials, "loadavg": load()}


def _dtype(precision: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# -- synthetic data ------------------------------------------------------------------------------
def synthetic_data(config: DINOConfig, n_images: int, seed: int = 0) -> DataSplits:
    """Random uint8 images of the shape the config's data set would give (no files needed)."""
    mnist = config.data.name == "fashion_mnist"
    channels = 1 if mnist else 3
    mean, std = FASHION_MNIST_STATS if mnist else IMAGENET_STATS
    size = config.data.load_size
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_images, channels, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (n_images,), generator=generator)
    dataset = TensorImageDataset(images, labels)
    return DataSplits(train=dataset, memory=dataset, queries=dataset, num_classes=10,
                      channels=channels, mean=mean, std=std)


def describe(config: DINOConfig) -> str:
    b, c = config.backbone, config.crops
    return (f"{config.batch_size} x (2x{c.global_size}px + {c.n_local}x{c.local_size}px), "
            f"ViT patch {b.patch_size} dim {b.embed_dim} depth {b.depth}, K={config.head.out_dim}")


# -- training step -------------------------------------------------------------------------------
class _Timed:
    """One speed variant of the trainer at one shape, and the steps it has taken."""

    def __init__(self, name: str, config: DINOConfig, data: DataSplits, env: DistEnv):
        self.name, self.config, self.env = name, config, env
        self.run = Trainer(config, data, env)
        if name in BF16_ATTENTION:  # timm's own attention forward, all of it under autocast
            float32_attention(self.run.student_module, enabled=False)
            float32_attention(self.run.teacher, enabled=False)
        self.run.student.train()
        self.epoch = config.epochs - 1  # past any warm-up or frozen last layer: a typical step
        self.count = 0
        self.times: list[float] = []
        self.warmup_times: list[float] = []

    def step(self, images: torch.Tensor, timer=None) -> float:
        it = self.epoch * self.run.iters_per_epoch + self.count % self.run.iters_per_epoch
        self.count += 1
        sync(self.env.device)
        start = time.perf_counter()
        self.run.step(images, self.epoch, it, timer)
        sync(self.env.device)
        return time.perf_counter() - start


def bench_train(label: str, config: DINOConfig, variants: list[str], device: torch.device,
                warmup: int, iters: int) -> list[dict]:
    """Time the trainer's step for each variant of ``config``; the plain variant comes first.
    Utilisation (``mfu``) is filled in by the caller against the peak of each precision."""
    env = DistEnv(0, 1, 0, device)
    per_rank = config.batch_size
    n_batches = 2
    data = synthetic_data(config, per_rank * n_batches)
    configs = {}
    for name in variants:
        overrides = dict(VARIANTS[name]) if name in VARIANTS else {}
        configs[name] = config.replace(overrides)
    runs = [_Timed(name, cfg, data, env) for name, cfg in configs.items()]
    print(f"[train {label}] {describe(config)}: variants {', '.join(variants)}", flush=True)

    # data loading: the trainer's own loader, batches kept for the timed steps
    loader_load = load()
    start = time.perf_counter()
    batches = [images for images, _ in itertools.islice(iter(runs[0].run.loader), n_batches)]
    data_loading = (time.perf_counter() - start) / n_batches

    # FLOPs of one step, counted on the eager fp32 variant per phase (same math in every variant)
    counter = FlopCounter()
    runs[0].step(batches[0], counter)
    flops = dict(counter.flops)
    model_flops = sum(flops.get(p, 0) for p in TINY_MODEL_PHASES)

    first_step = {}
    for r in runs:  # warm-up: compiles the compiled variants
        r.warmup_times = [r.step(batches[i % n_batches]) for i in range(warmup)]
        first_step[r.name] = r.warmup_times[0]
        print(f"  warm-up {r.name}: first step {first_step[r.name]:.2f}s", flush=True)
    # Interleaved rounds, one step of each variant in turn, so that load changes hit all alike.
    # On CPU the phase timer costs nothing (no synchronisation), so every timed step also gives
    # its breakdown; on a GPU it synchronises at each phase, so the breakdown comes from one
    # extra step per round and the step time from an untimed one.
    round_loads = []
    phases: dict[str, list[dict[str, float]]] = {r.name: [] for r in runs}
    for i in range(iters):
        for r in runs:
            timer = PhaseTimer(device)
            if device.type == "cuda":
                r.step(batches[i % n_batches], timer)
                r.times.append(r.step(batches[(i + 1) % n_batches]))
            else:
                r.times.append(r.step(batches[i % n_batches], timer))
            phases[r.name].append(dict(timer.seconds))
        round_loads.append(os.getloadavg()[0])

    results = []
    plain_median, plain_best = statistics.median(runs[0].times), min(runs[0].times)
    for r in runs:
        breakdown = {p: statistics.median(t.get(p, 0.0) for t in phases[r.name]) for p in PHASES}
        breakdown["student_forward_backward"] = breakdown["student_forward"] + breakdown["backward"]
        breakdown["data_loading"] = data_loading
        _release_free_memory()
        with peak_memory(device) as memory:
            r.step(batches[0])
        median, best = statistics.median(r.times), min(r.times)
        precision = r.config.precision
        warm = r.warmup_times
        results.append({
            "label": label, "variant": r.name, "shape": describe(r.config),
            "precision": precision, "compile": r.config.compile, "batch_size": r.config.batch_size,
            "device": str(device),
            "s_per_iter": median, "s_per_iter_mean": statistics.fmean(r.times), "s_per_iter_min": best,
            "iters": len(r.times), "step_times_s": r.times,
            "images_per_s": r.config.batch_size / median, "images_per_s_best": r.config.batch_size / best,
            "speedup_vs_plain": plain_median / median, "speedup_vs_plain_best": plain_best / best,
            "first_step_s": first_step[r.name],
            "compile_overhead_s": max(warm[0] - median, 0.0) if r.config.compile else 0.0,
            "breakdown_s": breakdown, "breakdown_of": "median over the rounds, per phase",
            "step_flops": model_flops, "augment_flops": flops.get("augment", 0), "flops_by_phase": flops,
            "achieved_flops_per_s": model_flops / median, "mfu_against": precision,
            "memory": memory,
            "loadavg": load(), "loadavg_during_rounds": [min(round_loads), max(round_loads)],
            "loadavg_data_loading": loader_load,
        })
        print(f"  {r.name}: {median:.3f} s/it median, {best:.3f} best ({r.config.batch_size / median:.0f} "
              f"img/s), x{plain_median / median:.2f} (x{plain_best / best:.2f} best) vs plain", flush=True)
    return results


# -- k-NN ----------------------------------------------------------------------------------------
def bench_knn(config: DINOConfig, device: torch.device, n_extract: int, n_memory: int,
              n_queries: int, chunk_sizes: list[int], variants: list[str],
              repeats: int = 3) -> dict[str, Any]:
    """Feature extraction (the trainer's own ``extract_features``, best of ``repeats`` passes),
    classification of ``n_queries`` against ``n_memory`` random features, and peak memory against
    the chunk size (two chunks of queries each: the bound is per chunk, not per query)."""
    env = DistEnv(0, 1, 0, device)
    out: dict[str, Any] = {"extraction": [], "classification": {}, "chunk_memory": []}
    data = synthetic_data(config, max(n_extract, config.batch_size))
    dataset = torch.utils.data.Subset(data.memory, range(n_extract))
    for name in variants:
        cfg = config.replace(VARIANTS[name])
        run = Trainer(cfg, data, env)
        backbone = run.teacher.backbone.eval()
        extract_features(backbone, torch.utils.data.Subset(data.memory, range(min(64, n_extract))),
                         data, cfg, env, run._autocast)  # warm-up
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            extract_features(backbone, dataset, data, cfg, env, run._autocast)
            sync(device)
            times.append(time.perf_counter() - start)
        out["extraction"].append({"variant": name, "precision": cfg.precision, "images": n_extract,
                                  "image_size": cfg.crops.global_size, "seconds": times,
                                  "images_per_s": n_extract / statistics.median(times),
                                  "images_per_s_best": n_extract / min(times), "loadavg": load()})
        print(f"[knn] extraction {name}: {n_extract / min(times):.0f} img/s (best of {repeats})", flush=True)
        del run, backbone

    dim = config.backbone.embed_dim
    generator = torch.Generator().manual_seed(0)
    memory_features = torch.randn(n_memory, dim, generator=generator).to(device)
    memory_labels = torch.randint(0, 10, (n_memory,), generator=generator).to(device)
    queries = torch.randn(n_queries, dim, generator=generator).to(device)
    query_labels = torch.randint(0, 10, (n_queries,), generator=generator).to(device)
    ev = config.eval

    def classify(n: int, chunk: int) -> float:
        sync(device)
        start = time.perf_counter()
        knn_accuracy(memory_features, memory_labels, queries[:n], query_labels[:n], 10,
                     ev.knn_k, ev.knn_temperature, chunk)
        sync(device)
        return time.perf_counter() - start

    classify(min(n_queries, ev.chunk_size), ev.chunk_size)  # warm-up
    _release_free_memory()
    with peak_memory(device) as memory:
        times = [classify(n_queries, ev.chunk_size)]
    times += [classify(n_queries, ev.chunk_size) for _ in range(repeats - 1)]
    seconds = min(times)
    out["classification"] = {"memory_rows": n_memory, "query_rows": n_queries, "dim": dim,
                             "k": ev.knn_k, "chunk_size": ev.chunk_size, "seconds": seconds,
                             "seconds_all": times, "queries_per_s": n_queries / seconds,
                             "memory": memory, "loadavg": load()}
    print(f"[knn] classify {n_memory} x {n_queries} (dim {dim}, chunk {ev.chunk_size}): "
          f"{seconds:.2f}s", flush=True)
    for chunk in chunk_sizes:
        n = min(n_queries, 2 * chunk)
        _release_free_memory()
        with peak_memory(device) as memory:
            seconds = classify(n, chunk)
        similarity = chunk * n_memory * 4  # the (chunk x memory) fp32 similarity block
        out["chunk_memory"].append({"chunk_size": chunk, "query_rows": n, "seconds": seconds,
                                    "memory": memory, "similarity_block_bytes": similarity,
                                    "delta_over_block": memory["delta_bytes"] / similarity,
                                    "loadavg": load()})
        print(f"[knn] chunk {chunk}: +{memory['delta_bytes'] / 2**20:.0f} MiB "
              f"(similarity block {similarity / 2**20:.0f} MiB)", flush=True)
    return out


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


# -- same learning -------------------------------------------------------------------------------
def bench_learn(config: DINOConfig, seeds: int, root: Path) -> dict[str, Any]:
    """Whole trainings (``core.train.train``) of the profile's config and of its plain fp32 eager
    twin for ``seeds`` seeds: the fast path must land within seed noise of the plain one."""
    from core.train import train

    variants = {"plain": config.replace(VARIANTS["plain"]), "profile": config}
    runs = []
    for seed in range(seeds):
        for name, cfg in variants.items():
            cfg = cfg.replace({"seed": seed})
            start_load = load()
            result = train(cfg, root / f"{name}-seed{seed}", progress=False)
            runs.append({"variant": name, "seed": seed, "precision": cfg.precision, "compile": cfg.compile,
                         "knn_top1": result["knn_top1"], "knn_top5": result["knn_top5"],
                         "loss": result.get("loss"), "train_seconds": result["train_seconds"],
                         "loadavg_start": start_load, "loadavg": load()})
            print(f"[learn] {name} seed {seed}: k-NN top-1 {result['knn_top1']:.2f}% "
                  f"({result['train_seconds']:.0f} s)", flush=True)
    summary = {}
    for name in variants:
        top1 = [r["knn_top1"] for r in runs if r["variant"] == name]
        summary[name] = {"knn_top1": top1, "mean": statistics.fmean(top1),
                         "spread": max(top1) - min(top1)}
    gap = summary["profile"]["mean"] - summary["plain"]["mean"]
    noise = max(summary["plain"]["spread"], summary["profile"]["spread"])
    return {"shape": describe(config), "config": config.flat(), "runs": runs, "summary": summary,
            "gap": gap, "seed_spread": noise, "within_seed_noise": abs(gap) <= noise}


# -- report ---------------------------------------------------------------------------------------
def _fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def _fmt_bytes(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def _knn_report(knn: dict[str, Any]) -> str:
    rows = [[e["variant"], str(e["image_size"]), str(e["images"]), f"{e['images_per_s']:.0f}",
             f"{e['images_per_s_best']:.0f}", str(e["loadavg"][0])] for e in knn["extraction"]]
    parts = ["k-NN feature extraction (teacher backbone, eval views)",
             _table(["variant", "px", "images", "img/s", "best img/s", "load"], rows)]
    c = knn["classification"]
    parts += [f"k-NN classification {c['memory_rows']} x {c['query_rows']} (dim {c['dim']}, "
              f"k {c['k']}, chunk {c['chunk_size']}): {c['seconds']:.2f} s, "
              f"peak {_fmt_bytes(c['memory']['peak_bytes'])} (+{_fmt_bytes(c['memory']['delta_bytes'])}), "
              f"load {c['loadavg'][0]}"]
    rows = [[str(m["chunk_size"]), str(m["query_rows"]), _fmt_bytes(m["memory"]["delta_bytes"]),
             _fmt_bytes(m["similarity_block_bytes"]), f"{m['delta_over_block']:.2f}",
             f"{m['seconds']:.2f}", str(m["loadavg"][0])] for m in knn["chunk_memory"]]
    parts += ["k-NN memory against chunk_size",
              _table(["chunk", "queries", "+mem", "sim block", "ratio", "s", "load"], rows)]
    return "\n".join(parts)


def report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    parts = [f"benchmarks on {meta['device_name']} ({meta['cpu_count']} CPU cores, torch "
             f"{meta['torch']}, {meta['threads']} threads); load average at start "
             f"{meta['loadavg_start']}, at end {meta.get('loadavg_end')}"]
    if results.get("peak"):
        rows = [[dev, prec, f"{v['flops_per_s'] / 1e9:.1f}", str(v["n"]), str(v["loadavg"][0]),
                 str(v.get("loadavg_again", ["-"])[0])]
                for dev, by_prec in results["peak"].items() for prec, v in by_prec.items()]
        parts += ["", "peak matmul (best short trial, measured before and after the training steps)",
                  _table(["device", "precision", "GFLOP/s", "n", "load", "load after"], rows)]
    if results.get("train"):
        rows = []
        for r in results["train"]:
            b = r["breakdown_s"]
            rows.append([r["label"], r["variant"], f"{r['s_per_iter']:.3f}", f"{r['s_per_iter_min']:.3f}",
                         f"{r['images_per_s']:.0f}",
                         f"x{r['speedup_vs_plain']:.2f} (x{r['speedup_vs_plain_best']:.2f})",
                         f"{100 * r['mfu']:.0f}% ({100 * r['mfu_best']:.0f}%) {r['mfu_against']}",
                         f"{r['step_flops'] / 1e9:.1f}",
                         " ".join(f"{1000 * b[p]:.0f}" for p in
                                  ("data_loading", "augment", "teacher", "student_forward_backward",
                                   "loss", "optimizer", "ema")),
                         _fmt_bytes(r["memory"]["peak_bytes"]), _fmt_bytes(r["memory"]["delta_bytes"]),
                         f"{r['first_step_s']:.1f}" if r["first_step_s"] else "-",
                         f"{r['loadavg'][0]} ({r['loadavg_during_rounds'][0]:.1f}-"
                         f"{r['loadavg_during_rounds'][1]:.1f})"])
        parts += ["", "training step: s/it = median of interleaved rounds, best = fastest step; speedup "
                  "against plain by median (by best); breakdown in ms: data aug teacher student_fwd+bwd "
                  "loss optim ema",
                  _table(["shape", "variant", "s/it", "best", "img/s", "speedup", "MFU (best)", "GFLOP/step",
                          "breakdown ms", "peak mem", "step +mem", "1st step s", "load (rounds)"], rows)]
        shapes = {r["label"]: r["shape"] for r in results["train"]}
        parts += [f"  {label}: {shape}" for label, shape in shapes.items()]
    for key in ("knn", "knn_cuda"):
        if results.get(key):
            parts += ["", f"[{key}]", _knn_report(results[key])]
    if results.get("loader"):
        parts += ["", loader_report(results["loader"])]
    learn = results.get("learn")
    if learn:
        rows = [[r["variant"], str(r["seed"]), r["precision"], str(r["compile"]), f"{r['knn_top1']:.2f}",
                 f"{r['train_seconds']:.0f}", str(r["loadavg"][0])] for r in learn["runs"]]
        parts += ["", f"same learning: whole trainings, {learn['shape']}",
                  _table(["variant", "seed", "precision", "compile", "k-NN top-1", "train s", "load"], rows),
                  f"mean top-1: profile - plain = {learn['gap']:+.2f} points; largest seed spread "
                  f"{learn['seed_spread']:.2f} points: " + ("within" if learn["within_seed_noise"] else "OUTSIDE")
                  + " seed noise"]
    study = results.get("study")
    if study:
        parts += [""]
        if "skipped" in study:
            parts += [f"study overhead: skipped ({study['skipped']})"]
        else:
            parts += [f"study overhead: {study['runs']} runs, wall {study['wall_s']:.1f} s, "
                      f"training {study['train_s']:.1f} s, overhead {study['overhead_per_run_s']:.2f} s/run "
                      f"({100 * study['overhead_fraction']:.1f}% of run time; launcher "
                      f"{_fmt_s(study['launcher_overhead_s'])}, inside the jobs "
                      f"{_fmt_s(study['in_job_overhead_s'])}), load {study['loadavg'][0]}",
                      f"{study['grid_runs']}-run grid: plan {study['plan_s']:.2f} s in process, "
                      f"dry-run command {study['dry_run_s']:.2f} s (interpreter + imports "
                      f"{study['cli_start_s']:.2f} s), load {study['dry_run_loadavg'][0]}"]
    return "\n".join(parts)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def options(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with what it implies resolved (sections, variants, GPU batches, the CPU
    and learn configs, the output file) and refused, as ``core.cli`` refuses, before the first
    measurement: a mistake found after minutes of measuring would lose them."""
    p = cli.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[1],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="micro shapes, few iterations (a smoke test)")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections of {','.join(SECTIONS + OPT_IN)} (default: "
                        f"{','.join(SECTIONS)}; learn = 2 x seeds whole trainings, plain and fast)")
    cli.add_profile(p, help="CPU training profile (default: tiny)")
    cli.add_set(p, "override a value of the CPU profile, e.g. --set backbone.patch_size=8")
    p.add_argument("--variants", default=None,
                   help="CPU speed variants, plain first (default: plain,bf16,bf16+compile,fp32+compile,"
                        "bf16/bf16-attention; quick: plain,bf16,bf16+compile)")
    p.add_argument("--gpu-batches", default="64,128", help="ViT-S/16 batch sizes per GPU")
    p.add_argument("--iters", type=int, default=None, help="timed rounds (default 10; quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per variant (default 2; quick 1)")
    p.add_argument("--study-runs", type=int, default=None, help="runs of the study overhead study")
    p.add_argument("--learn-seeds", type=int, default=2, help="seeds of the learn section (default 2)")
    p.add_argument("--learn-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override for the learn section's trainings (on top of --set)")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/<time>.json)")
    args = p.parse_args(argv)

    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SECTIONS + OPT_IN))
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS + OPT_IN)}")
    if "train" in args.only and "peak" not in args.only:
        args.only.append("peak")  # utilisation needs the peak of the same run
    for option in ("iters", "study_runs", "learn_seeds"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            p.error(f"--{option.replace('_', '-')} {getattr(args, option)}: give at least 1")
    quick = args.quick
    args.iters = args.iters or (2 if quick else 10)
    args.warmup = max(1, args.warmup if args.warmup is not None else (1 if quick else 2))
    args.variants = (args.variants.split(",") if args.variants else
                     ["plain", "bf16", "bf16+compile"] + ([] if quick else ["fp32+compile", "bf16/bf16-attention"]))
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad or args.variants[0] != "plain":
        p.error(f"--variants must start with plain and name only {', '.join(VARIANTS)}")
    batches = args.gpu_batches.split(",")
    if not all(b.strip().isdigit() and int(b) > 0 for b in batches):
        p.error(f"--gpu-batches {args.gpu_batches}: write batch sizes per GPU, e.g. 64,128")
    args.gpu_batches = [16] if quick else [int(b) for b in batches]
    args.overrides = {**(QUICK_SHAPES if quick else {}), **cli.assignments(args.set)}
    args.cpu_config = profile_config(args.profile, args.overrides)
    if "learn" in args.only:  # the only section that trains on the data set itself
        learned = {**args.overrides, **cli.assignments(args.learn_set, option="--learn-set")}
        args.learn_config = profile_config(args.profile, learned)
        preflight.check(args.learn_config)
    if problem := (cli.file_problem(args.out, "--out") if args.out is not None
                   else cli.folder_problem(str(RESULTS), "--out")):
        p.error(problem)
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = options(argv)
    except (ConfigError, DataNotFoundError) as error:
        return cli.refuse(str(error))
    quick, only, variants, iters, warmup = args.quick, args.only, args.variants, args.iters, args.warmup
    overrides, cpu_config = args.overrides, args.cpu_config
    cuda = torch.cuda.is_available()

    results: dict[str, Any] = {"meta": {
        "started": datetime.datetime.now().isoformat(timespec="seconds"), "quick": quick,
        "argv": sys.argv[1:] if argv is None else argv, "host": platform.node(),
        "python": platform.python_version(), "torch": torch.__version__,
        "timm": importlib.import_module("timm").__version__, "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name(0) if cuda else _cpu_name(),
        "cuda": cuda, "loadavg_start": load(),
        "profile": args.profile, "overrides": overrides}}

    cpu = torch.device("cpu")
    gpu = torch.device("cuda", 0) if cuda else None
    peak_precisions = {"cpu": sorted({VARIANTS[v]["precision"] for v in variants}),
                       "cuda": ["fp32", "bf16", "fp16"]}

    def measure_peaks() -> dict[str, dict[str, dict]]:
        peaks = {"cpu": {prec: matmul_peak(cpu, _dtype(prec), 1024 if quick else 2048, 0.5 if quick else 2.0)
                         for prec in peak_precisions["cpu"]}}
        if gpu is not None:
            peaks["cuda"] = {prec: matmul_peak(gpu, _dtype(prec), 4096 if quick else 8192, 0.5 if quick else 2.0)
                             for prec in peak_precisions["cuda"]}
        return peaks

    if "peak" in only:
        results["peak"] = measure_peaks()
        for dev, by_prec in results["peak"].items():
            for prec, v in by_prec.items():
                print(f"[peak] {dev} {prec}: {v['flops_per_s'] / 1e9:.1f} GFLOP/s", flush=True)

    if "train" in only:
        results["train"] = bench_train(args.profile, cpu_config, variants, cpu, warmup, iters)
        if gpu is not None:
            gpu_variants = ["plain", "fp16", "bf16", "bf16+compile"] if not quick else ["plain", "bf16"]
            for batch in args.gpu_batches:
                config = profile_config("vits16_imagenet", {"batch_size": batch, "data.num_workers": 0})
                results["train"] += bench_train(f"vits16 b{batch}", config, gpu_variants, gpu, warmup, iters)
        # the peak once more after the steps: the better of the two is the machine's peak
        again = measure_peaks()
        for dev, by_prec in again.items():
            for prec, v in by_prec.items():
                first = results["peak"][dev][prec]
                first["flops_per_s_again"] = v["flops_per_s"]
                first["loadavg_again"] = v["loadavg"]
                first["flops_per_s"] = max(first["flops_per_s"], v["flops_per_s"])
        for r in results["train"]:
            peak = results["peak"]["cuda" if r["device"].startswith("cuda") else "cpu"][r["precision"]]
            r["peak_flops_per_s"] = peak["flops_per_s"]
            r["mfu"] = r["step_flops"] / r["s_per_iter"] / peak["flops_per_s"]
            r["mfu_best"] = r["step_flops"] / r["s_per_iter_min"] / peak["flops_per_s"]

    if "knn" in only:
        # eval runs in the run's precision: plain fp32 and the profile's own
        knn_variants = ["plain"] + ([cpu_config.precision] if cpu_config.precision != "fp32" else [])
        if quick:
            results["knn"] = bench_knn(cpu_config, cpu, 256, 6000, 1000, [64, 256], knn_variants, 1)
        else:
            results["knn"] = bench_knn(cpu_config, cpu, 4096, 60000, 10000, [256, 1024, 4096], knn_variants)
        if cuda:
            gpu = torch.device("cuda", 0)
            config = profile_config("vits16_imagenet", {"data.num_workers": 0, "batch_size": 256})
            results["knn_cuda"] = bench_knn(config, gpu, 512 if quick else 2048, 60000, 10000,
                                            [1024, 4096], ["plain", "fp16"], 1 if quick else 3)

    if "study" in only:
        results["study"] = bench_study(args.study_runs or (2 if quick else 12), 1000, quick,
                                       600 if quick else 1800)

    if "loader" in only:
        results["loader"] = bench_loader(8 if quick else 64, 1.0 if quick else 10.0)

    if "learn" in only:
        with tempfile.TemporaryDirectory(prefix="bench-learn-") as tmp:
            results["learn"] = bench_learn(args.learn_config, args.learn_seeds, Path(tmp))

    results["meta"]["loadavg_end"] = load()
    results["meta"]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    out = Path(args.out) if args.out is not None else RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print()
    print(report(results))
    print(f"\n-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
