"""The ImageFolder loader's cost per CPU core, and the loader workers an 8-GPU node needs.

ImageFolder views are decoded and cropped per image in DataLoader workers (``core.crops``), so
a training node needs enough workers to keep its GPUs fed. This times one item of
``core.crops.MultiCropImages`` (PIL decode, then the ViT-S/16 recipe's 2x224 + 8x96
random-resized crops and flips) in this process on one thread, over synthetic 500x375 JPEGs
(ImageNet's typical size) written to a temporary folder, and divides the node's image rate by
it. Rates per core are counted in the thread's CPU time, not wall time: on a shared machine
other processes take the core away part of the time (the wall-time rate is kept next to it).
Collation and the transfer from the workers are not included, so the worker count is a lower
bound.

The rate assumed is the paper's ViT-S/16 throughput on a V100, 1007 img/s per GPU; the
reference's own run (8 GPUs, 100 ImageNet epochs in 1.75 days) averaged 106 img/s per GPU, so
its figure is printed too.
"""
from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.crops import MultiCropImages, load_rgb
from core.profiles import profile_config

GPUS = 8
STEP_RATES = {  # images per second per GPU
    "paper ViT-S/16 V100 throughput": 1007.0,
    "reference run (100 ep in 1.75 days)": 100 * 1_281_167 / (1.75 * 86400 * GPUS),
}
ASSUMED = "paper ViT-S/16 V100 throughput"
WIDTH, HEIGHT, QUALITY = 500, 375, 90


def write_jpegs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` photo-like JPEGs: smooth random shapes plus grain, so that they compress (and
    decode) more like photos than pure noise or flat colour would."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC), dtype=np.float32)
        grain = rng.normal(0, 12, (HEIGHT, WIDTH, 3))
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        paths.append(folder / f"{i:04d}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=QUALITY)
    return paths


def _rate(work, n_items: int, seconds: float) -> dict[str, float]:
    """Items per second of ``work(index)`` over passes of ``n_items`` items, repeated for at
    least ``seconds``: per CPU second (median and best pass) and per wall second (median)."""
    work(0)  # warm-up: first-call costs (imports, allocator) are not the steady state
    cpu, wall, started = [], [], time.perf_counter()
    while not cpu or time.perf_counter() - started < seconds:
        start_cpu, start_wall = time.thread_time(), time.perf_counter()
        for index in range(n_items):
            work(index)
        cpu.append(n_items / (time.thread_time() - start_cpu))
        wall.append(n_items / (time.perf_counter() - start_wall))
    return {"per_cpu_s": statistics.median(cpu), "per_cpu_s_best": max(cpu),
            "per_wall_s": statistics.median(wall)}


def bench_loader(n_images: int = 64, seconds: float = 10.0) -> dict[str, Any]:
    """Decode and decode + crop rates on one thread, and the workers each step rate needs."""
    crops = profile_config("vits16_imagenet").crops
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
            paths = write_jpegs(Path(tmp), n_images)
            dataset = MultiCropImages([(str(p), 0) for p in paths], crops)
            torch.manual_seed(0)
            decode = _rate(lambda i: load_rgb(str(paths[i])), n_images, seconds / 3)["per_cpu_s"]
            item = _rate(dataset.__getitem__, n_images, 2 * seconds / 3)
            jpeg_bytes = statistics.fmean(os.path.getsize(p) for p in paths)
    finally:
        torch.set_num_threads(threads)
    full = item["per_cpu_s"]
    workers = {name: math.ceil(GPUS * rate / full) for name, rate in STEP_RATES.items()}
    result = {"image": f"{WIDTH}x{HEIGHT} JPEG q{QUALITY}", "jpeg_kb": jpeg_bytes / 1000, "images": n_images,
              "views": f"2x{crops.global_size} + {crops.n_local}x{crops.local_size}",
              "decode_per_s": decode, "images_per_s_per_core": full,
              "images_per_s_per_core_best": item["per_cpu_s_best"], "images_per_wall_s": item["per_wall_s"],
              "ms_per_image": 1000 / full, "crop_ms_per_image": 1000 / full - 1000 / decode,
              "gpus": GPUS, "step_rates_per_gpu": STEP_RATES, "assumed_step_rate": ASSUMED,
              "workers_needed": workers[ASSUMED], "workers_needed_by_rate": workers,
              "loadavg": [round(x, 2) for x in os.getloadavg()]}  # other processes slow it down
    print(f"[loader] {full:.0f} img/s per core ({result['ms_per_image']:.1f} ms: decode "
          f"{1000 / decode:.1f} ms + crops {result['crop_ms_per_image']:.1f} ms); an {GPUS}-GPU node at "
          f"{STEP_RATES[ASSUMED]:.0f} img/s per GPU needs {workers[ASSUMED]} loader workers", flush=True)
    return result


def loader_report(r: dict[str, Any]) -> str:
    lines = [f"ImageFolder loader, one thread: {r['image']} ({r['jpeg_kb']:.0f} kB), {r['views']} views: "
             f"{r['images_per_s_per_core']:.0f} img/s per core (best {r['images_per_s_per_core_best']:.0f}; "
             f"{r['images_per_wall_s']:.0f} per wall second); "
             f"{r['ms_per_image']:.1f} ms per image = decode {1000 / r['decode_per_s']:.1f} ms + crops "
             f"{r['crop_ms_per_image']:.1f} ms; load {r['loadavg'][0]}"]
    for name, rate in r["step_rates_per_gpu"].items():
        mark = " (assumed)" if name == r["assumed_step_rate"] else ""
        lines.append(f"  workers for {r['gpus']} GPUs at {rate:.0f} img/s per GPU, {name}{mark}: "
                     f"ceil({r['gpus']} x {rate:.0f} / {r['images_per_s_per_core']:.0f}) = "
                     f"{r['workers_needed_by_rate'][name]}")
    return "\n".join(lines)
