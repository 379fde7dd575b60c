"""The batched multi-crop augmentation: shapes, determinism, and each op checked on images whose
right answer is known without the code under test."""
import math

import pytest
import torch
import torch.nn.functional as F

from core.augment import MultiCropAugmentation, eval_views
from core.config import CropsConfig

MEAN, STD = (0.5,), (0.25,)
PLAIN = dict(global_size=32, local_size=16, color_jitter=(0.0, 0.0, 0.0, 0.0), blur_sigma=(1e-3, 1e-3))


def run(crops, images, seed=0, mean=MEAN, std=STD):
    return MultiCropAugmentation(crops, mean, std)(images, torch.Generator().manual_seed(seed))


def unnormalise(view):
    return view * STD[0] + MEAN[0]


@pytest.mark.parametrize("channels", [1, 3])
def test_views_shapes_dtypes_and_order(channels):
    crops = CropsConfig(n_local=3, global_size=32, local_size=16)
    images = torch.randint(0, 256, (5, channels, 28, 36), dtype=torch.uint8)
    views = run(crops, images, mean=MEAN * channels, std=STD * channels)
    assert [tuple(v.shape) for v in views] == [(5, channels, 32, 32)] * 2 + [(5, channels, 16, 16)] * 3
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in views)
    for v in views:  # normalised [0, 1] pixels
        assert unnormalise(v).min() >= -1e-6 and unnormalise(v).max() <= 1 + 1e-6


def test_same_seed_same_views_other_seed_other_views():
    crops = CropsConfig(n_local=2, global_size=32, local_size=16)
    images = torch.randint(0, 256, (6, 3, 28, 28), dtype=torch.uint8)
    first, again, other = (run(crops, images, seed=s, mean=MEAN * 3, std=STD * 3) for s in (7, 7, 8))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not any(torch.equal(a, b) for a, b in zip(first, other))


def test_a_view_is_the_same_whichever_views_are_augmented_beside_it():
    """Views of one size are augmented as one batch, yet the globals and the first local come out
    bit for bit as they do with fewer locals beside them: each view draws its own numbers, in
    view order."""
    images = torch.randint(0, 256, (6, 3, 28, 28), dtype=torch.uint8)
    many, one = (run(CropsConfig(n_local=n, global_size=32, local_size=16), images, seed=3,
                     mean=MEAN * 3, std=STD * 3) for n in (6, 1))
    assert all(torch.equal(a, b) for a, b in zip(many[:3], one))
    cropped_views = [torch.randint(0, 256, (6, 1, s, s), dtype=torch.uint8) for s in (32, 32, 16, 16, 16)]
    three, single = (run(CropsConfig(n_local=n, global_size=32, local_size=16), cropped_views[:2 + n], seed=3)
                     for n in (3, 1))
    assert all(torch.equal(a, b) for a, b in zip(three[:3], single))


def smooth_image(batch, size=28):
    i = torch.arange(size, dtype=torch.float64)
    wave = torch.sin(2 * math.pi * i / size)[:, None] * torch.cos(2 * math.pi * i / (2 * size))[None, :]
    return (127.5 + 100 * wave).round().to(torch.uint8).expand(batch, 1, size, size).clone()


def test_full_crop_is_a_plain_resize_up_to_flip():
    crops = CropsConfig(n_local=0, global_scale=(1.0, 1.0), **PLAIN)
    images = smooth_image(64)
    view = unnormalise(run(crops, images)[0])
    expected = F.interpolate(images.double() / 255, size=(32, 32), mode="bicubic",
                             align_corners=False).clamp(0, 1).float()
    straight = (view - expected).abs().amax(dim=(1, 2, 3))
    flipped = (view - expected.flip(-1)).abs().amax(dim=(1, 2, 3))
    assert torch.minimum(straight, flipped).max() < 1e-4
    assert (straight < 1e-4).any() and (flipped < 1e-4).any()


def test_flip_frequency_is_one_half():
    crops = CropsConfig(n_local=2, global_scale=(1.0, 1.0), local_scale=(1.0, 1.0), **PLAIN)
    ramp = torch.linspace(0, 120, 28).round().to(torch.uint8)  # below 0.5: never solarised
    images = ramp.expand(4000, 1, 28, 28).clone()
    for view in run(crops, images):
        flipped = (view[..., 0].mean(dim=(1, 2)) > view[..., -1].mean(dim=(1, 2))).float().mean()
        assert 0.45 < flipped < 0.55


def cropped(crops, batch, fill):
    """Already cropped uint8 views, as the ImageFolder loader delivers them: one batch per view."""
    sizes = [crops.global_size] * 2 + [crops.local_size] * crops.n_local
    return [fill(batch, s) for s in sizes]


@pytest.mark.parametrize("cropped_views", [False, True])
def test_solarisation_only_on_second_global_view(cropped_views):
    crops = CropsConfig(n_local=4, **PLAIN)
    level = 200 / 255  # above the 0.5 threshold, so a solarised pixel becomes 1 - level
    images = (cropped(crops, 2000, lambda b, s: torch.full((b, 1, s, s), 200, dtype=torch.uint8))
              if cropped_views else torch.full((2000, 1, 28, 28), 200, dtype=torch.uint8))
    views = [unnormalise(v) for v in run(crops, images)]
    for index, view in enumerate(views):
        solarised = (view - (1 - level)).abs().amax(dim=(1, 2, 3)) < 1e-5
        untouched = (view - level).abs().amax(dim=(1, 2, 3)) < 1e-5
        assert (solarised | untouched).all()
        if index == 1:
            assert 0.16 < solarised.float().mean() < 0.24
        else:
            assert not solarised.any()


def test_cropped_views_get_the_reference_blur_probabilities_and_no_geometry():
    """Blur p = 1, 0.1, then 0.5 per local view; with the other ops off, an unblurred view is
    its input exactly: no crop, resize or flip on this path."""
    crops = CropsConfig(n_local=2, global_size=32, local_size=16, color_jitter=(0.0, 0.0, 0.0, 0.0),
                        blur_sigma=(2.0, 2.0))
    views = cropped(crops, 2000, lambda b, s: torch.randint(0, 128, (b, 1, s, s), dtype=torch.uint8))
    for view, out, p_blur in zip(views, run(crops, views), (1.0, 0.1, 0.5, 0.5)):
        same = (unnormalise(out) - view.float() / 255).abs().amax(dim=(1, 2, 3)) < 1e-6
        assert abs((~same).float().mean() - p_blur) < 0.035
        assert unnormalise(out)[~same].std() < 0.5 * (view.float() / 255).std()


def test_cropped_views_must_match_the_crops_config():
    crops = CropsConfig(n_local=2, global_size=32, local_size=16)
    views = cropped(crops, 2, lambda b, s: torch.zeros((b, 1, s, s), dtype=torch.uint8))
    with pytest.raises(ValueError, match="do not match"):
        run(crops, views[:-1])
    with pytest.raises(ValueError, match="do not match"):
        run(crops, views[:2] + [torch.zeros((2, 1, 32, 32), dtype=torch.uint8)] * 2)


def test_blur_keeps_a_constant_image_constant():
    crops = CropsConfig(n_local=2, global_size=32, local_size=16, color_jitter=(0.0, 0.0, 0.0, 0.0),
                        blur_sigma=(1.0, 3.0))
    levels = torch.randint(0, 128, (64,), dtype=torch.uint8)  # below 0.5: no solarisation
    images = levels.view(-1, 1, 1, 1).expand(64, 1, 28, 28).clone()
    for view in run(crops, images):
        assert torch.allclose(unnormalise(view), levels.view(-1, 1, 1, 1).float() / 255, atol=1e-5)


def test_blur_smooths_noise():
    crops = CropsConfig(n_local=0, global_size=32, local_size=16, global_scale=(1.0, 1.0),
                        color_jitter=(0.0, 0.0, 0.0, 0.0), blur_sigma=(2.0, 2.0))
    images = torch.randint(0, 256, (32, 1, 32, 32), dtype=torch.uint8)
    blurred = unnormalise(run(crops, images)[0])  # global view 1 is always blurred
    assert blurred.std() < 0.3 * (images.float() / 255).std()


def test_colour_jitter_keeps_grey_images_grey():
    crops = CropsConfig(n_local=1, global_size=32, local_size=16)  # the paper's jitter strengths
    grey = torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8).expand(32, 3, 28, 28).clone()
    for view in run(crops, grey, mean=MEAN * 3, std=STD * 3):
        assert (view - view[:, :1]).abs().max() < 1e-4


def test_eval_views_is_the_centre_crop():
    images = torch.arange(2 * 3 * 10 * 10).remainder(256).to(torch.uint8).view(2, 3, 10, 10)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.4)
    out = eval_views(images, size=6, crop_fraction=0.6, mean=mean, std=std)  # 6 of 10 pixels
    expected = (images[:, :, 2:8, 2:8].float() / 255 - torch.tensor(mean).view(3, 1, 1)) \
        / torch.tensor(std).view(3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_eval_views_resizes_to_size():
    images = torch.full((2, 1, 28, 28), 51, dtype=torch.uint8)
    out = eval_views(images, size=32, crop_fraction=0.875, mean=(0.0,), std=(1.0,))
    assert out.shape == (2, 1, 32, 32)
    assert torch.allclose(out, torch.full_like(out, 0.2), atol=1e-6)
