"""Measuring helpers shared by the benchmark's sections: timers, FLOP and memory counters, matmul peaks, synthetic data."""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from core import profiles
from core.config import DINOConfig
from core.data import (
    FASHION_MNIST_STATS,
    IMAGENET_STATS,
    DataSplits,
    TensorImageDataset,
)

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("peak", "train", "ops", "knn", "study", "gpu", "loader")
OPT_IN = ("learn", "ledger")  # only when named in --only: whole trainings; a 10,000-run ledger (minutes)
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"precision": "fp32", "compile": False},  # the reference point of every speed-up
    "bf16": {"precision": "bf16", "compile": False},
    "fp16": {"precision": "fp16", "compile": False},
    "bf16+compile": {"precision": "bf16", "compile": True},
    "fp32+compile": {"precision": "fp32", "compile": True},
    # bf16 with timm's own attention (torch's fused kernel, in bf16) instead of core.cpu_autocast.fp32_softmax_attention
    "bf16/fused-attention": {"precision": "bf16", "compile": False},
}
BF16_ATTENTION = {"bf16/fused-attention"}
# Micro shapes for --quick: every code path, a fraction of the time.
# The micro profile's model (not its patch size: patch 8 would give vits16_imagenet 4x the tokens).
QUICK_SHAPES = {**{k: v for k, v in profiles.load("micro").own.items()
                   if k.startswith(("backbone.", "head.")) and k != "backbone.patch_size"}, "batch_size": 32}
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


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def describe(config: DINOConfig) -> str:
    b, c = config.backbone, config.crops
    return (f"{config.batch_size} x (2x{c.global_size}px + {c.n_local}x{c.local_size}px), "
            f"ViT patch {b.patch_size} dim {b.embed_dim} depth {b.depth}, K={config.head.out_dim}")

