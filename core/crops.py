"""The reference's multi-crop geometry for ImageFolder training, one image at a time.

Each view is a random-resized crop of the full decoded image, as torchvision's
``RandomResizedCrop`` defines it, resized with PIL's antialiased bicubic filter and flipped
with probability 1/2: what facebookresearch/dino does in its data-loader workers. It runs per
image because photos differ in size, so their full extent cannot be cropped as one batch. The
price is CPU time in the workers, mostly the resizes (ten per image in the ViT-S/16 recipe,
several times the cost of the JPEG decode: ``benchmarks/loader.py`` measures both), which the
reference pays too. The photometric half of the augmentation stays batched on the device
(``core.augment``).

All randomness comes from torch's global RNG: the trainer reseeds it per rank and epoch, and
DataLoader workers derive their seeds from it when they start, so crops are reproducible for a
given seed and number of workers, and differ between ranks. Workers that persisted across
epochs would see only the first epoch's reseeding (a resumed run would draw other crops), so
the trainer starts new ones every epoch.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from core.config import CropsConfig

ASPECT_RATIO = (3 / 4, 4 / 3)  # width / height, sampled log-uniformly
TRIES = 10  # boxes drawn before falling back to the centre crop


def view_crops(crops: CropsConfig) -> list[tuple[int, tuple[float, float]]]:
    """(output size, area scale range) of each view, in the loss's order: 2 global, then locals."""
    return ([(crops.global_size, crops.global_scale)] * 2
            + [(crops.local_size, crops.local_scale)] * crops.n_local)


def sample_box(height: int, width: int, scale: tuple[float, float],
               ratio: tuple[float, float] = ASPECT_RATIO) -> tuple[int, int, int, int]:
    """(top, left, box height, box width) of one random-resized crop of a height x width image.

    The area fraction is uniform in ``scale`` and the aspect ratio log-uniform in ``ratio``, the
    box rounded to whole pixels and placed uniformly; a box that does not fit is drawn again, up
    to ``TRIES`` times. Then the fallback is the largest centred box with the image's own aspect
    ratio clamped into ``ratio``, so a very elongated image still yields an in-range shape.
    """
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(TRIES):
        u_area, u_ratio = torch.rand(2, dtype=torch.float64).tolist()
        area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
        aspect = math.exp(log_low + (log_high - log_low) * u_ratio)
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(height - h + 1, ()))
            left = int(torch.randint(width - w + 1, ()))
            return top, left, h, w
    image_aspect = width / height
    aspect = min(max(image_aspect, ratio[0]), ratio[1])
    if aspect >= image_aspect:  # the box is as wide as the image
        w, h = width, round(width / aspect)
    else:  # as tall as the image
        w, h = round(height * aspect), height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(image: Image.Image, size: int, scale: tuple[float, float]) -> Tensor:
    """One view of an RGB PIL image as a uint8 (3, size, size) tensor: a ``sample_box`` crop
    resized to ``size`` (bicubic, antialiased: PIL widens the filter when it shrinks), then a
    horizontal flip with probability 1/2."""
    top, left, h, w = sample_box(image.height, image.width, scale)
    view = image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + w, top + h))
    if torch.rand(()) < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.array(view)).permute(2, 0, 1)


def load_rgb(path: str) -> Image.Image:
    """An image file decoded by PIL as RGB (greyscale replicated, alpha dropped), as the
    reference's loader does; torchvision's own decoder warns on every call in 0.29."""
    with Image.open(path) as image:
        return image.convert("RGB")


class MultiCropImages(Dataset):
    """Labelled image files -> ``([global 1, global 2, local 1, ..., local n], label)``, each view
    a uint8 (3, s, s) tensor, so DataLoader's default collation yields one uint8 batch per view.

    ``samples`` is a list of (path, label), e.g. an ``ImageFolder``'s ``samples``: sharing it
    with the k-NN memory's ImageFolder lists the tree once and keeps both in the same order.
    """

    def __init__(self, samples: Sequence[tuple[str, int]], crops: CropsConfig):
        self.samples = samples
        self.views = view_crops(crops)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[list[Tensor], int]:
        path, label = self.samples[index]
        image = load_rgb(path)
        return [random_resized_crop(image, size, scale) for size, scale in self.views], label
