"""k-NN evaluation cost: feature extraction and scoring."""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from benchmarks.measure import (
    VARIANTS,
    _release_free_memory,
    load,
    peak_memory,
    sync,
    synthetic_data,
)
from core.config import DINOConfig
from core.distributed import DistEnv
from core.evaluate import extract_features
from core.knn import knn_accuracy
from core.train import Trainer


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


