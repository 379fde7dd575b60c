"""Weighted k-NN against answers computed by hand."""
import math

import torch

from core.knn import knn_accuracy, knn_classify


def test_hand_computed_weighted_vote():
    # memory on the unit circle; query at angle 0
    angles = [0.1, -0.2, 0.5, 2.0, 3.0]
    labels = torch.tensor([0, 1, 1, 0, 2])
    train = torch.tensor([[math.cos(a), math.sin(a)] for a in angles])
    query = torch.tensor([[1.0, 0.0]])
    T, k = 0.5, 3
    # 3 nearest: 0.1 (class 0), -0.2 (class 1), 0.5 (class 1)
    w = {0: math.exp(math.cos(0.1) / T), 1: math.exp(math.cos(-0.2) / T) + math.exp(math.cos(0.5) / T)}
    assert w[1] > w[0]
    assert knn_classify(train, labels, query, num_classes=3, k=k, temperature=T).tolist() == [1]
    # with k = 1 only the nearest votes
    assert knn_classify(train, labels, query, num_classes=3, k=1, temperature=T).tolist() == [0]


def test_temperature_decides_between_many_far_and_one_near():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.6]])  # cos to class0 = 0.857, to class1 = 0.514
    # sharp votes (T small): the single nearest wins; soft votes (T large): the two far ones win
    assert knn_classify(train, labels, query, 2, k=3, temperature=0.07).tolist() == [0]
    assert knn_classify(train, labels, query, 2, k=3, temperature=10.0).tolist() == [1]


def test_one_test_row_and_k_larger_than_memory():
    train = torch.randn(5, 8)
    labels = torch.tensor([0, 1, 2, 3, 4])
    pred = knn_classify(train, labels, train[3:4] * 2.0, num_classes=5, k=20)
    assert pred.tolist() == [3]


def test_fifteen_hundred_classes_in_small_chunks():
    torch.manual_seed(0)
    num_classes = 1500
    centres = torch.nn.functional.normalize(torch.randn(num_classes, 64), dim=1)
    train = centres.repeat(2, 1) + 0.01 * torch.randn(2 * num_classes, 64)
    labels = torch.arange(num_classes).repeat(2)
    test = centres + 0.01 * torch.randn(num_classes, 64)
    pred = knn_classify(train, labels, test, num_classes, k=20, chunk_size=7)
    assert pred.tolist() == list(range(num_classes))
    acc = knn_accuracy(train, labels, test, torch.arange(num_classes), num_classes, chunk_size=100)
    assert acc == {"top1": 100.0, "top5": 100.0}


def test_top5_counts_second_choice():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    test = torch.tensor([[1.0, 0.05]])
    acc = knn_accuracy(train, labels, test, torch.tensor([1]), num_classes=2, k=3)
    assert acc == {"top1": 0.0, "top5": 100.0}  # with 2 classes, top-5 is top-2


def test_chunking_does_not_change_predictions():
    torch.manual_seed(3)
    train, labels = torch.randn(300, 16), torch.randint(0, 10, (300,))
    test = torch.randn(101, 16)
    a = knn_classify(train, labels, test, 10, chunk_size=1)
    b = knn_classify(train, labels, test, 10, chunk_size=1000)
    assert torch.equal(a, b)
