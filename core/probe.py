"""A linear probe on frozen features: the paper's second metric, beside weighted k-NN.

The paper trains a linear classifier on the frozen backbone (100 epochs of SGD on augmented
ImageNet crops). That costs as much as a short pre-training, so this probe is the cheap,
deterministic variant that small-scale studies can afford in every run, on the features the
k-NN already extracted (the memory split to train, the queries to test):

- features L2-normalised (as for k-NN), then standardised with the training split's mean and
  std per dimension, so one learning rate suits every backbone width and scale;
- a linear layer with bias, cross-entropy, AdamW (lr 1e-2, weight decay 1e-4), mini-batches of
  256 in a fixed shuffled order (seeded with 0), 30 epochs, no augmentation;
- top-1 accuracy (percent) of the final classifier on the queries.

Because the features are frozen and the recipe fixed, two runs' probe numbers differ only by
their backbones; the absolute number is lower than the paper's augmented probe would give.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPOCHS, BATCH, LR, WEIGHT_DECAY = 30, 256, 1e-2, 1e-4


@torch.enable_grad()
def linear_probe(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                 test_labels: Tensor, num_classes: int) -> float:
    """Top-1 accuracy (percent) on the test features of a linear classifier fitted on the train
    features with the recipe above."""
    train_x, test_x = (F.normalize(f.float(), dim=-1) for f in (train_features, test_features))
    mean, std = train_x.mean(dim=0), train_x.std(dim=0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    generator = torch.Generator().manual_seed(0)
    classifier = torch.nn.Linear(train_x.shape[1], num_classes).to(train_x.device)
    with torch.no_grad():
        classifier.weight.normal_(0, 0.01, generator=generator)
        classifier.bias.zero_()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    for _ in range(EPOCHS):
        order = torch.randperm(len(train_x), generator=generator).to(train_x.device)
        for batch in order.split(BATCH):
            loss = F.cross_entropy(classifier(train_x[batch]), train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        predicted = classifier(test_x).argmax(dim=-1)
    return 100.0 * (predicted == test_labels).float().mean().item()
