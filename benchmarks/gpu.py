"""ViT-S/16 on one GPU, as one command: is the step fast, and does the loader keep up with it?

``python -m benchmarks.run --only gpu`` times the trainer's own step (``benchmarks.step``) for
the paper's ViT-S/16 (``vits16_imagenet``: 2x224 + 8x96 crops, and 2x224 + 10x96) at batch 64
and 128 per GPU (``--gpu-batches``), in bf16 and fp16, and prints per GPU: images per second, model FLOP
utilisation against the GPU's dense bf16 peak (its data-sheet figure where the name is known,
else the bf16 matmul peak measured here, which is printed beside it anyway), and peak memory
(``torch.cuda.max_memory_allocated``). While each shape's steps run, the ImageFolder loader
works alongside in DataLoader worker processes, as in training: PIL decode and random-resized
crops of real 500x375 JPEGs (``core.crops.MultiCropImages``) into the same views and batch, with
the profile's ``data.num_workers`` workers per GPU (fewer if this machine has fewer cores). Its
images per second against the step's say whether the loader keeps the GPU fed; on a node the
other GPUs' workers take cores too, which is why ``cpus_per_task`` is per GPU.

With ``--quick`` (the test, on CPU) the same code runs a tiny ViT at 32 px, batch 4, one worker.
"""
from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from benchmarks.loader import write_jpegs
from benchmarks.measure import _table, load, matmul_peak
from benchmarks.step import bench_train
from core.crops import MultiCropImages
from core.profiles import profile_config

# Dense (no sparsity) bf16 tensor-core peaks from the data sheets, FLOP/s; the first name that
# is part of torch.cuda.get_device_name() applies, so the more specific come first.
DENSE_BF16_PEAK = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12,
                   "L40S": 362e12, "A10G": 70e12, "A10": 125e12, "L4": 121e12}
LOCAL_CROPS = (8, 10)
PRECISIONS = ("bf16", "fp16")
# the --quick shape: every code path of the full one, in seconds on CPU
QUICK = {"backbone.img_size": 32, "crops.global_size": 32, "crops.local_size": 16, "data.load_size": 40,
         "backbone.depth": 1, "backbone.embed_dim": 32, "backbone.num_heads": 2, "head.hidden_dim": 64,
         "head.bottleneck_dim": 32, "head.out_dim": 64}
QUICK_BATCH, QUICK_LOCAL_CROPS = 4, (2,)


def device_peak(device: torch.device, quick: bool) -> dict[str, Any]:
    """The dense bf16 peak utilisation is measured against, and the bf16 matmul peak measured here."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    measured = matmul_peak(device, torch.bfloat16, 1024 if quick else 8192, 0.5 if quick else 2.0)["flops_per_s"]
    known = next((peak for key, peak in DENSE_BF16_PEAK.items() if key in name), None)
    return {"device": name, "flops_per_s": known or measured, "source": "data sheet" if known else "measured matmul",
            "measured_matmul_flops_per_s": measured}


class _LoaderAlongside:
    """The ImageFolder loader iterated on a thread while the steps run; its workers are processes."""

    def __init__(self, files: list[Path], config, workers: int):
        dataset = MultiCropImages([(str(p), 0) for p in files], config.crops)
        self.loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True,
                                 num_workers=workers, persistent_workers=True)
        self.workers, self.batch = workers, config.batch_size
        self.images, self.seconds, self._stop = 0, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()

    def _run(self) -> None:
        first, start = True, time.perf_counter()
        try:
            while not self._stop.is_set():
                for _ in self.loader:
                    if first:  # worker start-up is not the steady state
                        first, start = False, time.perf_counter()
                        self._started.set()
                        continue
                    self.images += self.batch
                    self.seconds = time.perf_counter() - start
                    if self._stop.is_set():
                        break
        finally:
            self._started.set()  # a loader that failed does not keep the steps waiting

    def __enter__(self) -> _LoaderAlongside:
        self._thread.start()
        self._started.wait(timeout=300)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan


def bench_gpu(device: torch.device, quick: bool, warmup: int, iters: int, batches: list[int]) -> dict[str, Any]:
    """Every shape at each of ``batches`` per GPU (``--quick``: the tiny one, batch 4)."""
    peak = device_peak(device, quick)
    print(f"[gpu] {peak['device']}: dense bf16 peak {_tera(peak['flops_per_s'])} TFLOP/s ({peak['source']}; "
          f"bf16 matmul measured {_tera(peak['measured_matmul_flops_per_s'])})", flush=True)
    base = profile_config("vits16_imagenet")
    workers = 1 if quick else max(1, min(base.data.num_workers, (os.cpu_count() or 2) - 2))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        files = write_jpegs(Path(tmp), 8 if quick else 256)
        for n_local in QUICK_LOCAL_CROPS if quick else LOCAL_CROPS:
            for batch in (QUICK_BATCH,) if quick else batches:
                shape = {**(QUICK if quick else {}), "crops.n_local": n_local, "batch_size": batch,
                         "data.num_workers": 0}
                config = profile_config("vits16_imagenet", shape)
                with _LoaderAlongside(files, config, workers) as loader:
                    steps = bench_train(f"vits16 2x{config.crops.global_size}+{n_local}x{config.crops.local_size} "
                                        f"b{batch}", config, list(PRECISIONS), device, warmup, iters)
                for r in steps:
                    r.update(peak_flops_per_s=peak["flops_per_s"], peak_source=peak["source"],
                             mfu=r["step_flops"] / r["s_per_iter"] / peak["flops_per_s"],
                             mfu_measured_peak=r["step_flops"] / r["s_per_iter"] / peak["measured_matmul_flops_per_s"],
                             loader_images_per_s=loader.rate, loader_workers=workers,
                             loader_keeps_up=loader.rate >= r["images_per_s"])
                    rows.append(r)
                    print(f"[gpu] {r['label']} {r['variant']}: {r['images_per_s']:.0f} img/s, MFU "
                          f"{100 * r['mfu']:.1f}%, peak {r['memory']['peak_bytes'] / 2**30:.2f} GiB; loader "
                          f"({workers} workers) {loader.rate:.0f} img/s", flush=True)
    return {"peak": peak, "steps": rows, "loader_workers": workers, "loadavg": load()}


def gpu_report(r: dict[str, Any]) -> str:
    p = r["peak"]
    rows = [[s["label"], s["variant"], f"{s['s_per_iter']:.3f}", f"{s['images_per_s']:.0f}",
             f"{100 * s['mfu']:.1f}%", f"{100 * s['mfu_measured_peak']:.1f}%", f"{s['step_flops'] / 1e9:.3g}",
             f"{s['memory']['peak_bytes'] / 2**30:.2f}", f"{s['loader_images_per_s']:.0f}",
             "yes" if s["loader_keeps_up"] else "NO"] for s in r["steps"]]
    return "\n".join([
        f"ViT-S/16 per GPU on {p['device']}: MFU against the dense bf16 peak {_tera(p['flops_per_s'])} TFLOP/s "
        f"({p['source']}) and against the bf16 matmul measured here ({_tera(p['measured_matmul_flops_per_s'])}); "
        f"loader = decode + crops of 500x375 JPEGs in {r['loader_workers']} worker processes, alongside the steps",
        _table(["shape", "precision", "s/it", "img/s", "MFU", "MFU (measured peak)", "GFLOP/step", "peak GiB",
                "loader img/s", "loader keeps up"], rows)])


def _tera(flops_per_s: float) -> str:
    return f"{flops_per_s / 1e12:.3g}"
