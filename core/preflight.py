"""What can be known about a run's data before any work, without torch: are its files there, and do
they hold ``data.train_subset`` images and one batch for every rank?

A study's launcher never imports torch and runs where the user is (on SLURM, the login node), yet
these are the mistakes that would otherwise fail every job of a study after it has started; so
the launcher checks each distinct data config here, and the trainer does the same before it loads
anything. Fashion-MNIST's count is in its IDX header; an ImageFolder's training images are counted
only as far as the check needs, so a million-image tree costs a few directory listings.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

from core.config import ConfigError, DataConfig, DINOConfig
from core.profiles import FASHION_MNIST_DIR

FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# the files torchvision's ImageFolder loads (torchvision.datasets.folder.IMG_EXTENSIONS)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DataNotFoundError(FileNotFoundError):
    """The data set's files are not where the config says; the message says how to fix it."""


def check(config: DINOConfig, tasks: int = 1) -> None:
    """Refuse ``config`` (``DataNotFoundError`` or ``ConfigError``) unless its data is there and a
    run on ``tasks`` processes gets at least one batch per epoch on every rank."""
    if config.batch_size % tasks:
        raise ConfigError(f"batch_size={config.batch_size} is not divisible by the {tasks} processes; "
                          "choose a multiple of the world size")
    images = check_data(config.data, enough=config.batch_size)
    per_rank = images // tasks  # DistributedSampler(drop_last=True) gives each rank this many
    if per_rank < config.batch_size // tasks:
        ranks = f" ({per_rank} per rank on {tasks} processes)" if tasks > 1 else ""
        raise ConfigError(f"batch_size={config.batch_size} exceeds the {images} training images{ranks}: "
                          "lower batch_size or raise data.train_subset")


def check_data(cfg: DataConfig, enough: int = 1) -> int:
    """Refuse ``cfg`` unless its files are there and hold ``data.train_subset`` images; returns
    how many a run trains on, counted no further than ``enough`` without a subset."""
    subset = cfg.train_subset
    found = train_images(cfg, enough=subset or enough)
    if subset and found < subset:
        raise ConfigError(f"data.train_subset={subset} exceeds the {found} train images in "
                          f"{data_root(cfg)}; lower it or set 0 for all")
    return subset or found


def train_images(cfg: DataConfig, enough: int) -> int:
    """The train split's image count, counted no further than ``enough``."""
    if cfg.name == "fashion_mnist":
        return _idx_length(fashion_mnist_root(cfg) / FASHION_MNIST_FILES["train"][0])
    train = image_folder_root(cfg) / "train"
    count = 0
    for folder in sorted(_class_folders(train)):
        for _, _, names in os.walk(train / folder, followlinks=True):
            count += sum(name.lower().endswith(IMAGE_EXTENSIONS) for name in names)
            if count >= enough:
                return count
    return count


def data_root(cfg: DataConfig) -> Path:
    return Path(cfg.path or FASHION_MNIST_DIR) if cfg.name == "fashion_mnist" else Path(cfg.path)


def fashion_mnist_root(cfg: DataConfig) -> Path:
    """The folder of the four IDX files, or ``DataNotFoundError`` saying how to install them."""
    root = data_root(cfg)
    missing = [name for pair in FASHION_MNIST_FILES.values() for name in pair if not (root / name).is_file()]
    if missing:
        where = (f"{', '.join(missing)} missing in {root}" if root.is_dir()
                 else f"data.path {root} does not exist on this machine")
        raise DataNotFoundError(
            f"Fashion-MNIST not found: {where}. Install it with "
            "`apt-get install -y dataset-fashion-mnist` (Debian) or set data.path to the folder "
            "holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
    return root


def image_folder_layout(root: Path) -> str:
    return f"expected {root}/train/<class>/* and {root}/val/<class>/*; set data.path (--data)"


def image_folder_root(cfg: DataConfig) -> Path:
    """The ImageFolder root, once ``train/`` and ``val/`` are there with the same class folders."""
    root = data_root(cfg)
    if not root.is_dir():
        raise DataNotFoundError(f"ImageFolder not found: data.path {root} does not exist on this machine; "
                                + image_folder_layout(root))
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataNotFoundError(f"ImageFolder split {root / split} not found: {image_folder_layout(root)}")
    train, val = _class_folders(root / "train"), _class_folders(root / "val")
    if train != val:
        raise DataNotFoundError(f"train/ has classes {sorted(train)[:5]}... but val/ has {sorted(val)[:5]}...; "
                                f"both need the same class folders: {image_folder_layout(root)}")
    return root


def _class_folders(split: Path) -> set[str]:
    return {entry.name for entry in os.scandir(split) if entry.is_dir()}


def _idx_length(path: Path) -> int:
    """The first dimension in an IDX file's header (the MNIST format, gzipped)."""
    try:
        with gzip.open(path, "rb") as handle:
            header = handle.read(8)
    except (OSError, EOFError) as error:
        raise DataNotFoundError(f"{path} cannot be read ({error}); reinstall the data set") from error
    if len(header) < 8 or header[:3] != b"\x00\x00\x08":
        raise DataNotFoundError(f"{path} is not an IDX file of unsigned bytes (magic {header[:4].hex()}, "
                                "expected 000008xx); reinstall the data set")
    return int.from_bytes(header[4:8], "big")
