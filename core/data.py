"""Real image data sets as uint8 tensors, ready for the batched augmentation in ``core.augment``.

Data sets return uint8 images, not normalised floats: uint8 batches are 4x smaller to collate
and move to the device, where the photometric augmentation runs batched. Where the crops are
taken depends on the data:

- Fashion-MNIST is held in memory as whole 28 px squares: training images stay uncropped and
  ``core.augment`` crops them batched on the device. Each square is the full image, so nothing
  is lost, and loading stays a tensor index with no per-image work for loader workers.
- ImageFolder photos differ in size: each training item is already the list of multi-crop views,
  cropped from the full decoded image in the loader workers as the reference does
  (``core.crops``). The k-NN memory and queries are the same files loaded as centre squares
  (``load_square``), from which ``core.augment.eval_views`` takes the central crop: the
  reference's Resize(256) + CenterCrop(224).
- A folder of unlabelled image files trains as ImageFolder photos do. Its k-NN memory and
  queries come from ``data.eval_path``'s ImageFolder (which can also replace an ImageFolder's
  own); without one there are none, and the splits say why (``unlabelled``).
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.transforms.v2.functional import center_crop, pil_to_tensor, resize

from core.config import ConfigError, CropsConfig, DataConfig
from core.crops import MultiCropImages, load_rgb
from core.preflight import DataNotFoundError  # noqa: F401 (re-exported: what build_data raises)
from core.preflight import (FASHION_MNIST_FILES, dataset, fashion_mnist_root, image_files, image_folder_layout,
                            image_folder_root, unlabelled)

FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclasses.dataclass(frozen=True)
class DataSplits:
    """What pre-training and the k-NN evaluation need from a data set."""

    train: Dataset  # what to pre-train on: the train split (possibly a fixed subset), as uint8
    # images (Fashion-MNIST) or as lists of uint8 views (image files)
    memory: Dataset | None  # the labelled train split as uint8 images: the k-NN memory bank
    queries: Dataset | None  # the labelled test / val split: the k-NN queries
    num_classes: int  # of memory and queries; 0 without them
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    unlabelled: str | None = None  # why there are no memory and queries, when there are none


class TensorImageDataset(Dataset):
    """A whole split held in memory as uint8 ``images`` (N, C, H, W) and int64 ``targets`` (N,)."""

    def __init__(self, images: Tensor, targets: Tensor):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.targets[index])


def build_data(cfg: DataConfig, crops: CropsConfig | None = None) -> DataSplits:
    """The splits ``cfg`` names; raises ``DataNotFoundError`` before reading anything if files are
    missing, and ``ConfigError`` if ``cfg.train_subset`` exceeds the train split.

    ``crops`` shapes the ImageFolder training views; without it (k-NN-only callers) ImageFolder
    training items are the k-NN's centre squares. Fashion-MNIST ignores it.
    """
    kind = dataset(cfg)
    splits = _fashion_mnist(cfg) if kind == "fashion_mnist" else _image_files(cfg, kind, crops)
    if cfg.eval_path:
        memory, queries = _image_folder(Path(cfg.eval_path), cfg.load_size, "data.eval_path")
        splits = dataclasses.replace(splits, memory=memory, queries=queries, num_classes=len(memory.classes))
    if cfg.train_subset:
        total = len(splits.train)
        if cfg.train_subset > total:
            raise ConfigError(f"data.train_subset={cfg.train_subset} exceeds the {total} train images; "
                              "lower it or set 0 for all")
        # train and an ImageFolder's memory list the same images in the same order: the same files
        splits = dataclasses.replace(splits, train=fixed_subset(splits.train, cfg.train_subset))
    return splits


def fixed_subset(dataset: Dataset, size: int) -> Dataset:
    """The same random ``size`` items for every run and seed (0 or a size >= len: all of them).

    Seeded with 0, not the run seed, so every run of a study sees the same images."""
    if not size or size >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    return Subset(dataset, sorted(order[:size].tolist()))


def read_idx(path: str | Path) -> Tensor:
    """An IDX file (the MNIST format, optionally gzipped) as a uint8 tensor of its dimensions."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {data[:4].hex()}, "
                         "expected 000008xx)")
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = math.prod(shape)
    if len(data) - offset != count:
        raise ValueError(f"{path} holds {len(data) - offset} bytes of data, its header says {count}")
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(shape)


def _fashion_mnist(cfg: DataConfig) -> DataSplits:
    root = fashion_mnist_root(cfg)

    def split(images_file: str, labels_file: str) -> TensorImageDataset:
        images = read_idx(root / images_file).unsqueeze(1)
        if images.shape[-1] != cfg.load_size:
            images = _resize_uint8(images, cfg.load_size)
        return TensorImageDataset(images, read_idx(root / labels_file).long())

    train = split(*FASHION_MNIST_FILES["train"])
    return DataSplits(train=train, memory=train, queries=split(*FASHION_MNIST_FILES["test"]),
                      num_classes=10, channels=1, mean=FASHION_MNIST_STATS[0], std=FASHION_MNIST_STATS[1])


def _resize_uint8(images: Tensor, size: int) -> Tensor:
    resized = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False,
                            antialias=True)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def _image_files(cfg: DataConfig, kind: str, crops: CropsConfig | None) -> DataSplits:
    """An ImageFolder (``kind`` imagefolder) or a folder of unlabelled images (``images``)."""
    if kind == "imagefolder":
        memory, queries = _image_folder(Path(cfg.path), cfg.load_size, "data.path")
        squares, classes = memory, len(memory.classes)
    else:  # label 0 for every image: the loader needs one, training never reads it
        squares = SquareImages([(path, 0) for path in image_files(Path(cfg.path))], cfg.load_size)
        memory = queries = None
        classes = 0
    views = squares if crops is None else MultiCropImages(squares.samples, crops)
    return DataSplits(train=views, memory=memory, queries=queries, num_classes=classes, channels=3,
                      mean=IMAGENET_STATS[0], std=IMAGENET_STATS[1], unlabelled=unlabelled(cfg))


def _image_folder(root: Path, size: int, key: str) -> tuple[ImageFolder, ImageFolder]:
    """The ``train/`` and ``val/`` of an ImageFolder root, as ``size`` centre squares."""
    image_folder_root(root, key)
    loader = functools.partial(load_square, size=size)
    try:
        train, val = (ImageFolder(str(root / split), loader=loader) for split in ("train", "val"))
    except FileNotFoundError as error:  # a split without class folders or without images
        raise DataNotFoundError(f"{error}: {image_folder_layout(root, key)}") from error
    return train, val


class SquareImages(Dataset):
    """Image files as the k-NN's centre squares, with their labels: a folder of images as
    ImageFolder would give it, for callers that take no crops (``build_data`` without ``crops``)."""

    def __init__(self, samples: list[tuple[str, int]], size: int):
        self.samples, self.size = samples, size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        return load_square(path, self.size), label


def load_square(path: str, size: int) -> Tensor:
    """An image file as a uint8 RGB (3, size, size) tensor: shorter side resized to ``size``,
    centre square kept: the k-NN input before its central crop (the reference's Resize(256)).

    Every item has the same shape, so batches collate into one tensor for ``eval_views``.
    """
    image = pil_to_tensor(load_rgb(path))
    return center_crop(resize(image, [size], antialias=True), [size, size])
