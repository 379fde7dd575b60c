"""Where the step's time goes, per kind of operator: the table that says why a speed-up differs
between two CPUs.

``python -m benchmarks.run --only ops`` profiles the trainer's own step (``torch.profiler``, self
CPU time of each aten operator) for plain fp32 eager and for the profile's own variant, side by
side, and sums it into the kinds of work the issue names: matmuls (with the GFLOP/s they reach,
against the measured peak of their precision), attention, casts and copies, layer norms,
activations, the optimizer, and what is left. A bf16 step that is no faster than fp32 on some CPU
shows here whether its matmul kernels are slow there (matmul GFLOP/s far under the peak) or
whether the time went to work around them (casts, attention, small elementwise operators).

It also times the step at three batch sizes and fits a line: the intercept is what a step costs
whatever its size (operator dispatch, autograd, module calls, the optimizer over every weight),
the slope what each image adds. A faster variant shortens only the slope, so the ratio of the
slopes is the most its step can gain over plain while the step runs eagerly, operator by
operator.
"""
from __future__ import annotations

import itertools
import statistics
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.measure import VARIANTS, _table, describe, synthetic_data
from benchmarks.step import _Timed
from core.config import DINOConfig
from core.distributed import DistEnv

# The kinds of work, first match wins: (kind, substrings of the aten operator's name).
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation")),
    ("attention", ("scaled_dot_product", "aten::_softmax", "aten::softmax")),
    ("loss (log-softmax)", ("log_softmax",)),
    ("casts and copies", ("aten::copy_", "aten::_to_copy", "aten::clone", "aten::contiguous")),
    ("layer norm", ("layer_norm",)),
    ("activation", ("gelu",)),
    ("optimizer and clipping", ("adamw", "optimizer", "_foreach", "vector_norm", "clamp")),
    ("convolutions (patch embedding, blur)", ("convolution",)),
    ("crops (grid sampling)", ("grid_sampler", "affine_grid")),
)
OTHER = "other (elementwise, reductions, views)"
MATMUL = KINDS[0][0]


def kind_of(op: str) -> str:
    """The kind of work an aten operator's name belongs to (``KINDS``), else ``OTHER``."""
    name = op.lower()
    return next((kind for kind, parts in KINDS if any(p.lower() in name for p in parts)), OTHER)


def bench_ops(config: DINOConfig, device: torch.device, warmup: int, iters: int,
              peaks: dict[str, float]) -> dict[str, Any]:
    """Profile ``iters`` steps of plain fp32 and of ``config``'s own variant; ``peaks`` maps a
    precision to the matmul FLOP/s measured on ``device`` (the denominator of matmul utilisation)."""
    env = DistEnv(0, 1, 0, device)
    data = synthetic_data(config, config.batch_size * 2)
    variants = {"plain": config.replace(VARIANTS["plain"]), f"{config.precision} (profile)": config}
    out: dict[str, Any] = {"shape": describe(config), "iters": iters, "variants": {}}
    for name, cfg in variants.items():
        run = _Timed(name, cfg, data, env)  # the train section's typical step, past the warm-ups
        batches = [images for images, _ in itertools.islice(iter(run.run.loader), 2)]

        def step(i: int) -> None:
            run.step(batches[i % 2])

        for i in range(warmup):
            step(i)
        with FlopCounterMode(display=False) as counter:  # apart: counting slows the operators
            step(0)
        matmul_flops = sum(n for op, n in counter.get_flop_counts()["Global"].items()
                           if kind_of(f"aten::{op.__name__.split('.')[0]}") == MATMUL)
        with profile(activities=[ProfilerActivity.CPU]) as prof:  # with_flops would slow them too
            for i in range(iters):
                step(i)
        out["variants"][name] = _summarise(prof.key_averages(), iters, matmul_flops, peaks.get(cfg.precision))
        print(f"[ops {name}] {out['variants'][name]['total_ms']:.1f} ms of operators per step", flush=True)
        out["variants"][name]["per_batch"] = _fixed_cost(name, cfg, env, warmup, iters)
    return out


def _fixed_cost(name: str, config: DINOConfig, env: DistEnv, warmup: int, iters: int) -> dict[str, Any]:
    """Median step seconds (of at least 5 steps, so that one slow step does not move the line) at
    batch sizes of 1/16, 1/4 and all of ``config``'s, and the least-squares line through them:
    ``fixed_s`` per step plus ``per_image_s`` per image."""
    sizes = sorted({max(2, config.batch_size // 16), max(2, config.batch_size // 4), config.batch_size})
    medians = []
    for size in sizes:
        run = _Timed(name, config.replace({"batch_size": size}), synthetic_data(config, 2 * size), env)
        batches = [images for images, _ in itertools.islice(iter(run.run.loader), 2)]
        times = [run.step(batches[i % 2]) for i in range(warmup + max(iters, 5))][warmup:]
        medians.append(statistics.median(times))
    per_image, fixed = statistics.linear_regression(sizes, medians)
    return {"batch_sizes": sizes, "s_per_iter": medians, "fixed_s": fixed, "per_image_s": per_image}


def _summarise(events, iters: int, matmul_flops: int, peak: float | None) -> dict[str, Any]:
    """Self CPU milliseconds per step by kind and by operator, and the GFLOP/s of the matmuls
    (``matmul_flops`` per step)."""
    by_kind: dict[str, float] = {kind: 0.0 for kind, _ in KINDS} | {OTHER: 0.0}
    ops = []
    for e in events:
        if not e.key.startswith("aten::"):
            continue  # autograd nodes and the optimizer's wrapper: their time is their operators'
        ms = e.self_cpu_time_total / 1e3 / iters
        by_kind[kind_of(e.key)] += ms
        ops.append({"op": e.key, "ms_per_step": ms, "calls_per_step": e.count / iters})
    total = sum(by_kind.values())
    rate = matmul_flops / (by_kind[MATMUL] / 1e3) if by_kind[MATMUL] else 0.0
    return {"total_ms": total, "by_kind_ms": by_kind, "ops": sorted(ops, key=lambda o: -o["ms_per_step"])[:12],
            "matmul_flops_per_step": matmul_flops, "matmul_flops_per_s": rate, "matmul_peak_flops_per_s": peak,
            "matmul_of_peak": rate / peak if peak else None}


def ops_report(r: dict[str, Any]) -> str:
    names = list(r["variants"])
    kinds = list(r["variants"][names[0]]["by_kind_ms"])
    rows = []
    for kind in kinds + ["total"]:
        row = [kind]
        for name in names:
            v = r["variants"][name]
            ms = v["total_ms"] if kind == "total" else v["by_kind_ms"][kind]
            row.append(f"{ms:.1f} ({100 * ms / v['total_ms']:.0f}%)")
        rows.append(row)
    rate = []
    for name in names:
        v = r["variants"][name]
        share = f", {100 * v['matmul_of_peak']:.0f}% of its peak" if v["matmul_of_peak"] else ""
        rate.append(f"{name} {v['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s{share}")
    top = [[name, o["op"], f"{o['ms_per_step']:.2f}", f"{o['calls_per_step']:.0f}"]
           for name in names for o in r["variants"][name]["ops"][:6]]
    plain, fast = (r["variants"][n]["per_batch"] for n in (names[0], names[-1]))
    lines = "; ".join(f"{n} {1e3 * v['per_batch']['fixed_s']:.1f} ms + {1e3 * v['per_batch']['per_image_s']:.2f} ms "
                      "per image" for n, v in r["variants"].items())
    ceiling = (f"step against batch size (batches {', '.join(map(str, plain['batch_sizes']))}): {lines}; the "
               f"per-image cost alone is x{plain['per_image_s'] / fast['per_image_s']:.2f} faster in "
               f"{names[-1]}, the most its eager step can gain over {names[0]}")
    return "\n".join([
        f"where the step's time goes: self CPU ms per step (share) over {r['iters']} profiled steps, {r['shape']}",
        _table(["kind"] + names, rows),
        "matmuls reach " + "; ".join(rate),
        _table(["variant", "top operators", "ms/step", "calls/step"], top),
        ceiling])
