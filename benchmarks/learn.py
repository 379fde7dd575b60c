"""Same learning: the fast variant's k-NN against plain fp32 eager's, whole tiny runs."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from benchmarks.measure import VARIANTS, describe, load
from core.config import DINOConfig


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


