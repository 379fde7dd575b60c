"""Weighted k-NN evaluation of a frozen backbone: train split as memory bank, test split as queries.

Each process extracts features for a strided shard of the images and the shards are gathered,
so the cost is split over all GPUs; every rank then scores the same full feature sets. A run on
unlabelled images with no labelled folder to evaluate on still trains: its evaluation is the
reason it was skipped, under ``skipped``, so the result says why it has no accuracy.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from core.augment import eval_views
from core.config import DINOConfig
from core.data import DataSplits, fixed_subset
from core.distributed import DistEnv, gather_strided_rows
from core.knn import knn_accuracy
from core.probe import linear_probe


@torch.no_grad()
def knn_evaluate(backbone: nn.Module, data: DataSplits, config: DINOConfig, env: DistEnv,
                 autocast: Callable[[], AbstractContextManager] = nullcontext,
                 show: bool = False) -> dict[str, float | str]:
    """Top-1/top-5 (percent) of weighted k-NN on ``backbone``'s L2-normalised features, and the
    top-1 of a linear probe on the same features (``linear_top1``) when ``eval.linear_probe``;
    ``{"skipped": why}`` when ``data`` has no labelled memory and queries."""
    if data.memory is None or data.queries is None:
        return {"skipped": f"k-NN and linear probe skipped: {data.unlabelled}"}
    backbone.eval()
    ev = config.eval
    memory, memory_labels = extract_features(backbone, fixed_subset(data.memory, ev.max_memory),
                                             data, config, env, autocast, show)
    queries, query_labels = extract_features(backbone, fixed_subset(data.queries, ev.max_queries),
                                             data, config, env, autocast, show)
    result = knn_accuracy(memory, memory_labels, queries, query_labels, data.num_classes,
                          ev.knn_k, ev.knn_temperature, ev.chunk_size)
    if ev.linear_probe:
        result["linear_top1"] = linear_probe(memory, memory_labels, queries, query_labels, data.num_classes)
    return result


@torch.no_grad()
def extract_features(backbone: nn.Module, dataset: Dataset, data: DataSplits, config: DINOConfig,
                     env: DistEnv, autocast: Callable[[], AbstractContextManager] = nullcontext,
                     show: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of every image of ``dataset``, in dataset order, on every rank."""
    shard = Subset(dataset, range(env.rank, len(dataset), env.world_size))
    loader = DataLoader(shard, batch_size=max(256, config.batch_size // env.world_size),
                        num_workers=config.data.num_workers)
    features, labels = [], []
    for images, targets in tqdm(loader, desc="k-NN features", leave=False, disable=not show):
        x = eval_views(images.to(env.device), config.crops.global_size, config.data.eval_crop,
                       data.mean, data.std)
        with autocast():
            features.append(backbone(x).float())
        labels.append(targets.to(env.device))
    return (gather_strided_rows(torch.cat(features), len(dataset), env),
            gather_strided_rows(torch.cat(labels), len(dataset), env))

