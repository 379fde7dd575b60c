"""The linear probe against what a linear classifier must and cannot do."""
import torch

from core.probe import linear_probe


def _blobs(n, dim, classes, spread, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    labels = torch.randint(classes, (n,), generator=g)
    return centres[labels] + spread * torch.randn(n, dim, generator=g), labels


def test_separable_classes_are_all_found():
    x, y = _blobs(2000, 16, 5, 0.1, 0)
    xt, yt = _blobs(500, 16, 5, 0.1, 1)
    assert linear_probe(x, y, xt, yt, 5) == 100.0


def test_labels_unrelated_to_the_features_stay_at_chance():
    x = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))
    y = torch.randint(4, (2000,), generator=torch.Generator().manual_seed(1))
    xt = torch.randn(2000, 16, generator=torch.Generator().manual_seed(2))
    yt = torch.randint(4, (2000,), generator=torch.Generator().manual_seed(3))
    assert abs(linear_probe(x, y, xt, yt, 4) - 25.0) < 5.0  # chance on 4 classes, 2000 queries


def test_xor_is_beyond_a_linear_probe():
    # two classes in opposite quadrants: no line separates them, so a linear probe is at chance
    g = torch.Generator().manual_seed(0)
    signs = torch.randint(2, (4000, 2), generator=g) * 2 - 1
    x = signs.float() + 0.05 * torch.randn(4000, 2, generator=g)
    y = (signs[:, 0] * signs[:, 1] > 0).long()
    assert linear_probe(x[:3000], y[:3000], x[3000:], y[3000:], 2) < 65.0


def test_deterministic():
    x, y = _blobs(1000, 8, 3, 2.0, 0)
    xt, yt = _blobs(300, 8, 3, 2.0, 1)
    assert linear_probe(x, y, xt, yt, 3) == linear_probe(x, y, xt, yt, 3)
