"""The benchmark's results as a Markdown report."""
from __future__ import annotations

import platform
from typing import Any

from benchmarks.gpu import gpu_report
from benchmarks.ledger import ledger_report
from benchmarks.loader import loader_report
from benchmarks.measure import _table
from benchmarks.ops import ops_report


# -- report ---------------------------------------------------------------------------------------
def _fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def _fmt_bytes(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


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
    if results.get("ops"):
        parts += ["", ops_report(results["ops"])]
    for key in ("knn", "knn_cuda"):
        if results.get(key):
            parts += ["", f"[{key}]", _knn_report(results[key])]
    if results.get("gpu"):
        parts += ["", gpu_report(results["gpu"])]
    if results.get("loader"):
        parts += ["", loader_report(results["loader"])]
    if results.get("ledger"):
        parts += ["", ledger_report(results["ledger"])]
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


