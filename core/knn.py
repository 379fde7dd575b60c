"""Weighted k-NN classification on frozen features (the paper's k = 20, T = 0.07).

Each query votes with its k most cosine-similar memory rows, each vote weighted exp(sim / T).
Queries are scored in chunks so memory stays bounded by ``chunk_size x n_train`` similarities
and ``chunk_size x num_classes`` scores, for any number of test rows (1 included) and classes.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor


def knn_scores(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
               num_classes: int, k: int = 20, temperature: float = 0.07,
               chunk_size: int = 1024) -> Iterator[Tensor]:
    """Class scores (sum of weighted votes), one (chunk, num_classes) tensor per chunk of queries."""
    train = F.normalize(train_features.float(), dim=1)
    labels = train_labels.long().to(train.device)
    k = min(k, train.shape[0])
    for start in range(0, test_features.shape[0], chunk_size):
        queries = F.normalize(test_features[start:start + chunk_size].float().to(train.device), dim=1)
        similarity, index = (queries @ train.T).topk(k, dim=1)
        votes = (similarity / temperature).exp()
        scores = torch.zeros(queries.shape[0], num_classes, device=train.device)
        yield scores.scatter_add_(1, labels[index], votes)


def knn_classify(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                 num_classes: int, k: int = 20, temperature: float = 0.07,
                 chunk_size: int = 1024) -> Tensor:
    """The predicted class of every test row."""
    return torch.cat([s.argmax(dim=1) for s in knn_scores(
        train_features, train_labels, test_features, num_classes, k, temperature, chunk_size)])


def knn_accuracy(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                 test_labels: Tensor, num_classes: int, k: int = 20, temperature: float = 0.07,
                 chunk_size: int = 1024) -> dict[str, float]:
    """Top-1 and top-5 accuracy in percent (top-5 is top-``num_classes`` when there are fewer)."""
    top = min(5, num_classes)
    correct1 = correct5 = 0
    start = 0
    for scores in knn_scores(train_features, train_labels, test_features, num_classes, k,
                             temperature, chunk_size):
        truth = test_labels[start:start + scores.shape[0]].to(scores.device).view(-1, 1)
        ranked = scores.topk(top, dim=1).indices
        correct1 += (ranked[:, :1] == truth).sum().item()
        correct5 += (ranked == truth).any(dim=1).sum().item()
        start += scores.shape[0]
    n = max(test_features.shape[0], 1)
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n}
