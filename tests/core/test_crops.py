"""Per-image multi-crop views of ImageFolder photos: the crop boxes follow torchvision's
RandomResizedCrop (its ``get_params`` is the independent reference), reach the whole image, and
train through a real DataLoader reproducibly."""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import RandomResizedCrop

from core.augment import MultiCropAugmentation
from core.config import CropsConfig, DataConfig
from core.crops import MultiCropImages, random_resized_crop, sample_box
from core.data import build_data
from core.loss import DINOLoss
from core.model import build_network
from tests.helpers import micro_config

RATIO = (3 / 4, 4 / 3)
SHAPES = [(375, 500), (500, 375)]  # (height, width): landscape and portrait
SCALES = [(0.4, 1.0), (0.05, 0.4)]  # the paper's global and local crops


def ours(height, width, scale, n, seed):
    torch.manual_seed(seed)
    return [sample_box(height, width, scale) for _ in range(n)]


def torchvision_boxes(height, width, scale, n, seed):
    torch.manual_seed(seed)
    image = torch.empty(3, height, width)
    return [RandomResizedCrop.get_params(image, list(scale), list(RATIO)) for _ in range(n)]


def features(boxes, height, width):
    """Area fraction, aspect ratio (w / h) and the box centre in fractions of the image."""
    b = torch.tensor(boxes, dtype=torch.float64)
    top, left, h, w = b.unbind(1)
    return {"area": h * w / (height * width), "aspect": w / h,
            "centre_x": (left + w / 2) / width, "centre_y": (top + h / 2) / height}


def ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov D: the largest gap between the empirical CDFs, evaluated
    at every sample value (right-continuous, so ties count once on both sides)."""
    a, b = torch.sort(a).values, torch.sort(b).values
    points = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, points, right=True) / len(a)
    cdf_b = torch.searchsorted(b, points, right=True) / len(b)
    return (cdf_a - cdf_b).abs().max().item()


def ks_critical(n, m, alpha=1e-3):
    """D above which two samples of one continuous distribution are rejected at level alpha
    (the asymptotic Kolmogorov bound; conservative for these discrete, pixel-rounded boxes)."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


@pytest.mark.parametrize("height,width", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_box_distribution_matches_torchvision(height, width, scale):
    n = 4000
    mine = features(ours(height, width, scale, n, seed=1), height, width)
    reference = features(torchvision_boxes(height, width, scale, n, seed=2), height, width)
    for name in mine:
        assert ks_statistic(mine[name], reference[name]) < ks_critical(n, n), name
    # the same test rejects a nearby wrong distribution: the scale range 10 % wider at the bottom
    low = scale[0] - 0.1 * (scale[1] - scale[0])
    wider = features(torchvision_boxes(height, width, (low, scale[1]), n, seed=3), height, width)
    assert ks_statistic(mine["area"], wider["area"]) > ks_critical(n, n)


@pytest.mark.parametrize("height,width", [(50, 1000), (1000, 50)])
def test_fallback_is_torchvision_centre_crop(height, width):
    """No box of 90-100 % of a 20:1 image has a ratio in (3/4, 4/3), so every try fails and both
    fall back to the same centred box, of the ratio clamped to 4/3 (or 3/4)."""
    mine = set(ours(height, width, (0.9, 1.0), 20, seed=0))
    assert mine == set(torchvision_boxes(height, width, (0.9, 1.0), 20, seed=5))
    assert len(mine) == 1


@pytest.mark.parametrize("height,width", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_crops_reach_every_pixel(height, width, scale):
    """Global boxes cover every pixel, including the long side's ends that the centre square
    never showed. A local box covers a corner pixel only when it sits right in that corner
    (about 1 box in 40,000), so for them: every border row and column, and all but 0.1 %."""
    covered = torch.zeros(height, width, dtype=torch.bool)
    for top, left, h, w in ours(height, width, scale, 20000, seed=4):
        assert 0 <= top and 0 <= left and top + h <= height and left + w <= width
        covered[top:top + h, left:left + w] = True
    if scale == SCALES[0]:
        assert covered.all()
    else:
        assert all(edge.any() for edge in (covered[0], covered[-1], covered[:, 0], covered[:, -1]))
        assert covered.float().mean() > 0.999


def test_views_show_the_ends_of_the_long_side():
    """A 500x375 photo with a red strip at the left end and a blue one at the right end: a
    centre square (62 px cut from each end) never shows them, the crops of the full image do."""
    image = Image.new("RGB", (500, 375), (0, 255, 0))
    image.paste((255, 0, 0), (0, 0, 40, 375))
    image.paste((0, 0, 255), (460, 0, 500, 375))
    torch.manual_seed(0)
    views = torch.stack([random_resized_crop(image, 32, (0.4, 1.0)) for _ in range(400)]).int()
    red = (views[:, 0] > 200) & (views[:, 1] < 50)
    blue = (views[:, 2] > 200) & (views[:, 1] < 50)
    has_red, has_blue = red.flatten(1).any(1), blue.flatten(1).any(1)
    assert has_red.float().mean() > 0.2 and has_blue.float().mean() > 0.2
    # flipped in about half the views: the left end's red then lies in the view's right half
    red_on_right = red[:, :, 16:].flatten(1).sum(1) > red[:, :, :16].flatten(1).sum(1)
    assert 0.35 < red_on_right[has_red].float().mean() < 0.65


def test_full_box_view_is_a_bicubic_antialiased_resize():
    """With the area scale fixed at 1 on a square image every box is the whole image, so a view
    is PIL's antialiased bicubic resize of it, possibly mirrored."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (120, 120, 3), dtype=np.uint8))
    expected = torch.from_numpy(np.array(image.resize((24, 24), Image.Resampling.BICUBIC))).permute(2, 0, 1)
    torch.manual_seed(0)
    views = [random_resized_crop(image, 24, (1.0, 1.0)) for _ in range(20)]
    straight = [torch.equal(v, expected) for v in views]
    mirrored = [torch.equal(v, expected.flip(-1)) for v in views]
    assert all(s or m for s, m in zip(straight, mirrored)) and any(straight) and any(mirrored)


@pytest.fixture
def jpeg_tree(tmp_path):
    """Small noisy JPEGs of mixed sizes and modes in an ImageFolder layout."""
    rng = np.random.default_rng(0)
    sizes = [(50, 38), (38, 50), (64, 48), (40, 40)]  # (width, height)
    for split, per_class in (("train", 4), ("val", 1)):
        for c, name in enumerate(("cat", "dog", "eel")):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                w, h = sizes[(c + i) % len(sizes)]
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                mode_image = Image.fromarray(pixels)
                (mode_image.convert("L") if i == 3 else mode_image).save(folder / f"{i}.jpg", quality=90)
    return tmp_path


CROPS = CropsConfig(n_local=3, global_size=32, local_size=16, global_scale=(0.4, 1.0), local_scale=(0.1, 0.4))


def test_item_is_the_list_of_uint8_views(jpeg_tree):
    data = build_data(DataConfig(name="imagefolder", path=str(jpeg_tree), load_size=20), CROPS)
    assert isinstance(data.train, MultiCropImages) and data.train is not data.memory
    views, label = data.train[3]  # cat/3.jpg, a greyscale JPEG: three equal channels
    assert label == 0 and len(views) == 5
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 3
    assert all(v.dtype == torch.uint8 for v in views)
    assert all(torch.equal(v[0], v[1]) and torch.equal(v[1], v[2]) for v in views)


def crops_of_one_epoch(dataset, num_workers, seed):
    torch.manual_seed(seed)
    loader = DataLoader(dataset, batch_size=4, num_workers=num_workers)
    return [(views, labels) for views, labels in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_crops_are_reproducible_per_seed(jpeg_tree, num_workers):
    data = build_data(DataConfig(name="imagefolder", path=str(jpeg_tree), load_size=20), CROPS)
    first = crops_of_one_epoch(data.train, num_workers, seed=11)
    again = crops_of_one_epoch(data.train, num_workers, seed=11)
    other = crops_of_one_epoch(data.train, num_workers, seed=12)
    assert len(first) == 3
    for (views, labels), (views_again, labels_again), (views_other, _) in zip(first, again, other):
        assert [tuple(v.shape) for v in views] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)] * 3
        assert torch.equal(labels, labels_again)
        assert all(torch.equal(a, b) for a, b in zip(views, views_again))
        assert not any(torch.equal(a, b) for a, b in zip(views, views_other))


def test_loader_batches_train_a_dino_step(jpeg_tree):
    """The collated per-view batches go through the photometric augmentation, student and
    teacher, the loss and an optimizer step."""
    torch.set_num_threads(1)
    config = micro_config()
    data = build_data(DataConfig(name="imagefolder", path=str(jpeg_tree), load_size=20), CROPS)
    views, _ = crops_of_one_epoch(data.train, 2, seed=0)[0]
    augmented = MultiCropAugmentation(CROPS, data.mean, data.std)(views, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in augmented] == [tuple(v.shape) for v in views]
    torch.manual_seed(0)
    student = build_network(config.backbone, config.head, 3, 0.0)
    teacher = build_network(config.backbone, config.head, 3, 0.0)
    teacher.load_state_dict(student.state_dict())
    before = [p.detach().clone() for p in student.parameters()]
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    with torch.no_grad():
        teacher_out = teacher(augmented[:2])
    loss = DINOLoss(config.head.out_dim)(student(augmented), teacher_out, 0.04)
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item())
    assert any(not torch.equal(b, p) for b, p in zip(before, student.parameters()))
