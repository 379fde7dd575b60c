"""What can be known about a run's data before any work, without torch: which data set a folder
holds, are its files there, and do they hold ``data.train_subset`` images and one batch for
every rank?

A study's launcher never imports torch and runs where the user is (on SLURM, the login node), yet
these are the mistakes that would otherwise fail every job of a study after it has started; so
the launcher checks each distinct data config here, and the trainer does the same before it loads
anything. Fashion-MNIST's count is in its IDX header; an ImageFolder's or an image folder's files
are counted only as far as the check needs, and a class folder is looked into only until its
first image, so a million-image tree costs a few directory listings.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Iterator

from core.config import ConfigError, DataConfig, DINOConfig

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# the files torchvision's ImageFolder loads (torchvision.datasets.folder.IMG_EXTENSIONS)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUTS = ("an ImageFolder root (train/ and val/ with the same class folders), a folder of image files "
           "(unlabelled), or Fashion-MNIST's four IDX files")


class DataNotFoundError(FileNotFoundError):
    """The data set's files are not where the config says; the message says how to fix it."""


def check(config: DINOConfig, tasks: int = 1, labels_for: str = "") -> None:
    """Refuse ``config`` (``DataNotFoundError`` or ``ConfigError``) unless its data is there, a
    run on ``tasks`` processes gets at least one batch per epoch on every rank, and, where
    ``labels_for`` names what needs them (a study's metric), there are labels to evaluate on."""
    if config.batch_size % tasks:
        raise ConfigError(f"batch_size={config.batch_size} is not divisible by the {tasks} processes; "
                          "choose a multiple of the world size")
    images = check_data(config.data, enough=config.batch_size)
    per_rank = images // tasks  # DistributedSampler(drop_last=True) gives each rank this many
    if per_rank < config.batch_size // tasks:
        ranks = f" ({per_rank} per rank on {tasks} processes)" if tasks > 1 else ""
        raise ConfigError(f"batch_size={config.batch_size} exceeds the {images} training images{ranks}: "
                          "lower batch_size or raise data.train_subset")
    if labels_for:
        require_labels(config.data, labels_for)


def check_data(cfg: DataConfig, enough: int = 1) -> int:
    """Refuse ``cfg`` unless its files (and ``data.eval_path``'s) are there and hold
    ``data.train_subset`` images; returns how many a run trains on, counted no further than
    ``enough`` without a subset."""
    if cfg.eval_path:
        if dataset(cfg) == "fashion_mnist":  # 1 channel: a network for it cannot read RGB folders
            raise ConfigError("data.eval_path is for image folders: Fashion-MNIST is evaluated on its own "
                              "test split; set data.eval_path = ''")
        image_folder_root(Path(cfg.eval_path), "data.eval_path")
    subset = cfg.train_subset
    found = train_images(cfg, enough=subset or enough)
    if subset and found < subset:
        raise ConfigError(f"data.train_subset={subset} exceeds the {found} train images in "
                          f"{data_root(cfg)}; lower it or set 0 for all")
    return subset or found


def dataset(cfg: DataConfig) -> str:
    """What ``cfg`` trains on: ``data.name``, or for ``auto`` what ``data.path`` holds, recognised
    by its layout (Fashion-MNIST's IDX files, ``train/`` and ``val/``, image files)."""
    if cfg.name != "auto":
        return cfg.name
    root = Path(cfg.path)
    if not root.is_dir():
        where = "is a file" if root.exists() else "does not exist on this machine"
        raise DataNotFoundError(f"data.path {root} {where}; give {LAYOUTS}")
    names = {entry.name: entry.is_dir() for entry in os.scandir(root)}
    if any(name in names for pair in FASHION_MNIST_FILES.values() for name in pair):
        return "fashion_mnist"
    if names.get("train") or names.get("val"):
        return "imagefolder"
    if any(not is_dir and name.lower().endswith(IMAGE_EXTENSIONS) for name, is_dir in names.items()):
        return "images"
    folders = sorted(name for name, is_dir in names.items() if is_dir)
    hint = ""
    if any(_has_image(root / folder) for folder in folders):
        hint = ("; for labelled data move the class folders into train/ and val/, for unlabelled data "
                "set data.name=images (every image under the folder)")
    raise DataNotFoundError(f"data.path {root} is not a data set (it holds {_listing(names)}): "
                            f"expected {LAYOUTS}{hint}")


def unlabelled(cfg: DataConfig) -> str | None:
    """Why a run of ``cfg`` has no labels to score its k-NN and linear probe on, or None."""
    if dataset(cfg) != "images" or cfg.eval_path:
        return None
    return (f"data.path {cfg.path} holds unlabelled images and data.eval_path is empty, so there are no "
            "labels for the k-NN and the linear probe; set data.eval_path to a labelled ImageFolder root "
            "(train/ and val/ with class folders)")


def require_labels(cfg: DataConfig, needed_for: str) -> None:
    """Refuse ``cfg`` (``ConfigError``) if it has no labels, naming what needs them."""
    if missing := unlabelled(cfg):
        raise ConfigError(f"{needed_for} needs labels: {missing}")


def train_images(cfg: DataConfig, enough: int) -> int:
    """The train split's image count, counted no further than ``enough``."""
    kind = dataset(cfg)
    if kind == "fashion_mnist":
        return _idx_length(fashion_mnist_root(cfg) / FASHION_MNIST_FILES["train"][0])
    if kind == "images":
        files = image_files(_images_root(Path(cfg.path)))
    else:
        train = image_folder_root(Path(cfg.path)) / "train"
        files = (path for folder in sorted(_class_folders(train)) for path in image_files(train / folder))
    count = 0
    for _ in files:
        count += 1
        if count >= enough:
            break
    return count


def image_files(root: Path) -> Iterator[str]:
    """Every image file under ``root`` (symbolic links followed), in a fixed order."""
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders.sort()
        yield from (os.path.join(folder, name) for name in sorted(names) if name.lower().endswith(IMAGE_EXTENSIONS))


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


def image_folder_layout(root: Path, key: str = "data.path") -> str:
    option = " (--data)" if key == "data.path" else ""
    return f"expected {root}/train/<class>/* and {root}/val/<class>/*; set {key}{option}"


def image_folder_root(root: Path, key: str = "data.path") -> Path:
    """The ImageFolder root, once ``train/`` and ``val/`` are there with the same class folders,
    each holding an image (torchvision's ImageFolder refuses an empty class)."""
    layout = image_folder_layout(root, key)
    if not root.is_dir():
        raise DataNotFoundError(f"ImageFolder not found: {key} {root} does not exist on this machine; {layout}")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataNotFoundError(f"ImageFolder split {root / split} not found: {layout}")
    train, val = _class_folders(root / "train"), _class_folders(root / "val")
    if train != val:
        raise DataNotFoundError(f"train/ has classes {sorted(train)[:5]}... but val/ has {sorted(val)[:5]}...; "
                                f"both need the same class folders: {layout}")
    if not train:
        raise DataNotFoundError(f"{root}/train holds no class folders: {layout}")
    for split in ("train", "val"):
        empty = next((name for name in sorted(train) if not _has_image(root / split / name)), None)
        if empty is not None:
            raise DataNotFoundError(f"class folder {root / split / empty} holds no image file "
                                    f"({', '.join(IMAGE_EXTENSIONS)}): add images or remove it from train/ and val/")
    return root


def _images_root(root: Path) -> Path:
    if not _has_image(root):
        raise DataNotFoundError(f"data.path {root} holds no image file ({', '.join(IMAGE_EXTENSIONS)}); "
                                f"give {LAYOUTS}")
    return root


def _has_image(folder: Path) -> bool:
    """Whether any image file is under ``folder``, looked for only until the first one."""
    subfolders = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    subfolders.append(Path(entry.path))
                elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    return True
    except OSError:  # not a folder, or not readable: no image to train on there either
        return False
    return any(_has_image(subfolder) for subfolder in sorted(subfolders))


def _listing(names: dict[str, bool]) -> str:
    """A few of a folder's entries, for saying what was found instead of a data set."""
    if not names:
        return "nothing"
    folders = sorted(f"{name}/" for name, is_dir in names.items() if is_dir)
    shown = (folders + sorted(name for name, is_dir in names.items() if not is_dir))[:4]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


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
