"""The trainer's own step, timed per phase, per precision and compile variant."""
from __future__ import annotations

import itertools
import os
import statistics
import time

import torch

from benchmarks.measure import (
    BF16_ATTENTION,
    TINY_MODEL_PHASES,
    VARIANTS,
    FlopCounter,
    PhaseTimer,
    _release_free_memory,
    describe,
    load,
    peak_memory,
    sync,
    synthetic_data,
)
from core.config import DINOConfig
from core.data import DataSplits
from core.distributed import DistEnv
from core.cpu_autocast import fp32_softmax_attention
from core.train import PHASES, Trainer


# -- training step -------------------------------------------------------------------------------
class _Timed:
    """One speed variant of the trainer at one shape, and the steps it has taken."""

    def __init__(self, name: str, config: DINOConfig, data: DataSplits, env: DistEnv):
        self.name, self.config, self.env = name, config, env
        self.run = Trainer(config, data, env)
        if name in BF16_ATTENTION:  # timm's own attention forward, all of it under autocast
            fp32_softmax_attention(self.run.student_module, enabled=False)
            fp32_softmax_attention(self.run.teacher, enabled=False)
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


