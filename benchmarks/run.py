"""``python -m benchmarks.run [--quick] [--only train,knn,study] [--set KEY=VALUE]``

Every figure is measured in this one invocation, on this machine, and written to
``benchmarks/results/<timestamp>.json`` (or ``--out``) as well as printed as a table:

- ``peak``: the matmul throughput of the device per precision (a large square matmul), the
  denominator of every utilisation figure;
- ``train``: the trainer's own step (``core.train.Trainer.step``) for the ``tiny`` profile on CPU in
  several speed variants (``plain`` = eager fp32, the reference point; ``bf16``; ``+compile``):
  seconds per iteration, images per second,
  a per-phase breakdown (timed through the step's timer hook), FLOPs counted with
  ``torch.utils.flop_counter.FlopCounterMode``, model FLOP utilisation against the peak of the
  precision used, and peak memory of one step (RSS on CPU, allocated bytes on GPU);
- ``ops``: where the step's time goes, per kind of operator (matmuls and the GFLOP/s they reach,
  attention, casts, layer norms, activations, optimizer), plain fp32 beside the profile's own
  variant, from ``torch.profiler`` (``benchmarks/ops.py``);
- ``knn``: feature extraction rate of the teacher backbone on eval views, classification time
  of 60k x 10k random features, and peak memory against ``eval.chunk_size``;
- ``study``: wall time of ``python -m studies.run`` for N short runs (12 by default) minus the
  runs' own training time, and the time to plan and dry-run a 1,000-run grid. About 7 s of it
  is paid once per study (the launcher's and the first run's start-up, the report at the end),
  so the per-run figure falls with N; ``--study-runs N`` to see it;
- ``gpu``: ViT-S/16 (2x224 + 8x96 and + 10x96 crops) at batch 64 and 128 (``--gpu-batches``),
  bf16 and fp16, on the first GPU: images per second, MFU against the GPU's dense bf16 peak,
  peak memory, and the ImageFolder loader run alongside in worker processes
  (``benchmarks/gpu.py``); without a GPU it is skipped, and ``--only gpu`` is refused unless
  ``--quick`` (a tiny ViT on CPU, the test);
- ``loader``: images per second per CPU core that the ImageFolder loader decodes and crops
  (2x224 + 8x96 views of 500x375 JPEGs, one thread), and the loader workers an 8-GPU node
  needs at the ViT-S/16 step rate (``benchmarks/loader.py``);
- ``ledger`` (only with ``--only ledger``): planning, ``--dry-run``, ``--status`` and one job's
  ledger reads and writes on a synthetic ledger of 10,080 runs, journal file and SQLite
  (``benchmarks/ledger.py``; ``--ledger-runs N`` for another size);
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
import datetime
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.knn import bench_knn
from benchmarks.gpu import bench_gpu
from benchmarks.learn import bench_learn
from benchmarks.ledger import FULL_RUNS, bench_ledger
from benchmarks.loader import bench_loader
from benchmarks.ops import bench_ops
from benchmarks.measure import (
    OPT_IN,
    QUICK_SHAPES,
    RESULTS,
    SECTIONS,
    VARIANTS,
    _dtype,
    load,
    matmul_peak,
)
from benchmarks.report import _cpu_name, report
from benchmarks.step import bench_train
from benchmarks.study import bench_study
from core import cli, preflight
from core.config import ConfigError
from core.data import DataNotFoundError
from core.profiles import profile_config


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
                        "bf16/fused-attention; quick: plain,bf16,bf16+compile)")
    p.add_argument("--gpu-batches", default="64,128", help="ViT-S/16 batch sizes per GPU of the gpu section")
    p.add_argument("--iters", type=int, default=None, help="timed rounds (default 10; quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per variant (default 2; quick 1)")
    p.add_argument("--study-runs", type=int, default=None, help="runs of the study overhead study")
    p.add_argument("--ledger-runs", type=int, default=None,
                   help=f"runs of the ledger section's synthetic study (default {FULL_RUNS}; quick 200)")
    p.add_argument("--learn-seeds", type=int, default=2, help="seeds of the learn section (default 2)")
    p.add_argument("--learn-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override for the learn section's trainings (on top of --set)")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/<time>.json)")
    args = p.parse_args(argv)

    args.only_given = args.only != p.get_default("only")
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SECTIONS + OPT_IN))
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS + OPT_IN)}")
    if {"train", "ops"} & set(args.only) and "peak" not in args.only:
        args.only.append("peak")  # utilisation needs the peak of the same run
    for option in ("iters", "study_runs", "ledger_runs", "learn_seeds"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            p.error(f"--{option.replace('_', '-')} {getattr(args, option)}: give at least 1")
    quick = args.quick
    args.iters = args.iters or (2 if quick else 10)
    args.warmup = max(1, args.warmup if args.warmup is not None else (1 if quick else 2))
    args.variants = (args.variants.split(",") if args.variants else
                     ["plain", "bf16", "bf16+compile"] + ([] if quick else ["fp32+compile", "bf16/fused-attention"]))
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad or args.variants[0] != "plain":
        p.error(f"--variants must start with plain and name only {', '.join(VARIANTS)}")
    batches = args.gpu_batches.split(",")
    if not all(b.strip().isdigit() and int(b) > 0 for b in batches):
        p.error(f"--gpu-batches {args.gpu_batches}: write batch sizes per GPU, e.g. 64,128")
    args.gpu_batches = [int(b) for b in batches]
    if "gpu" in args.only and not (quick or torch.cuda.is_available()) and args.only_given:
        p.error("--only gpu: this machine has no CUDA device; run it on a GPU node, or add --quick for "
                "the same code on a tiny ViT on CPU")
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
    peak_precisions = {"cpu": sorted({VARIANTS[v]["precision"] for v in variants} | {cpu_config.precision}),
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

    if "ops" in only:
        peaks = {prec: v["flops_per_s"] for prec, v in results["peak"]["cpu"].items()}
        results["ops"] = bench_ops(cpu_config, cpu, warmup, iters, peaks)

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

    if "gpu" in only:
        if gpu is not None or quick:
            results["gpu"] = bench_gpu(gpu or cpu, quick, warmup, iters, args.gpu_batches)
        else:
            print("[gpu] skipped: no CUDA device on this machine", flush=True)

    if "loader" in only:
        results["loader"] = bench_loader(8 if quick else 64, 1.0 if quick else 10.0)

    if "ledger" in only:
        results["ledger"] = bench_ledger(args.ledger_runs or (200 if quick else FULL_RUNS))

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
