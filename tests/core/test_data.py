"""Data sets: the real Fashion-MNIST files, and ImageFolder trees and IDX files written here
(the crops of ImageFolder training views are tested in test_crops.py)."""
import gzip
import shutil

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from core.config import ConfigError, CropsConfig, DataConfig
from core.data import DataNotFoundError, build_data, fixed_subset, read_idx

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def fashion_mnist():
    return build_data(DataConfig(name="fashion_mnist", path=FASHION_MNIST_DIR, load_size=28))


def test_fashion_mnist_splits(fashion_mnist):
    data = fashion_mnist
    assert (len(data.train), len(data.memory), len(data.queries)) == (60000, 60000, 10000)
    assert (data.num_classes, data.channels, data.mean, data.std) == (10, 1, (0.2860,), (0.3530,))
    train_labels = torch.tensor([data.train[i][1] for i in range(len(data.train))])
    assert torch.equal(torch.bincount(train_labels), torch.full((10,), 6000))
    query_labels = torch.tensor([data.queries[i][1] for i in range(len(data.queries))])
    assert torch.equal(torch.bincount(query_labels), torch.full((10,), 1000))
    image, label = data.queries[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.uint8 and isinstance(label, int)
    pixels = torch.stack([data.train[i][0] for i in range(500)])
    assert (pixels.min(), pixels.max()) == (0, 255)


def test_missing_fashion_mnist_says_how_to_install(tmp_path):
    with pytest.raises(DataNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        build_data(DataConfig(name="fashion_mnist", path=str(tmp_path / "nowhere")))


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.numpy().tobytes())


def test_read_idx_round_trip_and_bad_magic(tmp_path):
    array = torch.randint(0, 256, (3, 4, 5), dtype=torch.uint8)
    write_idx(tmp_path / "a-idx3-ubyte.gz", array)
    assert torch.equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), array)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd")  # float IDX
    with pytest.raises(ValueError, match="IDX"):
        read_idx(tmp_path / "bad")


@pytest.fixture
def small_fashion_mnist(tmp_path):
    """A 50 / 10 image stand-in in Fashion-MNIST's file layout."""
    train_images = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    for name, array in {"train-images-idx3-ubyte.gz": train_images,
                        "train-labels-idx1-ubyte.gz": torch.arange(50, dtype=torch.uint8) % 10,
                        "t10k-images-idx3-ubyte.gz": torch.full((10, 28, 28), 90, dtype=torch.uint8),
                        "t10k-labels-idx1-ubyte.gz": torch.arange(10, dtype=torch.uint8)}.items():
        write_idx(tmp_path / name, array)
    return tmp_path


def test_fashion_mnist_resized_to_load_size(small_fashion_mnist):
    data = build_data(DataConfig(name="fashion_mnist", path=str(small_fashion_mnist), load_size=32))
    image, label = data.queries[3]
    assert image.shape == (1, 32, 32) and image.dtype == torch.uint8 and label == 3
    assert (image == 90).all()  # a constant image stays constant through the resize


def test_train_subset_is_fixed(small_fashion_mnist):
    cfg = DataConfig(name="fashion_mnist", path=str(small_fashion_mnist), train_subset=12, load_size=28)
    first, second = build_data(cfg), build_data(cfg)
    assert len(first.train) == 12 and len(first.memory) == 50 and len(first.queries) == 10
    assert list(first.train.indices) == list(second.train.indices)
    assert len(set(first.train.indices)) == 12
    assert torch.equal(first.train[0][0], first.memory[first.train.indices[0]][0])
    with pytest.raises(ConfigError, match="train_subset"):
        build_data(DataConfig(name="fashion_mnist", path=str(small_fashion_mnist), train_subset=51))


CLASSES = ("cat", "dog", "eel")


def solid(mode, size, colour):
    return Image.new(mode, size, colour)


def three_bands(size=(40, 20)):
    """Red left quarter, green middle half, blue right quarter."""
    image = Image.new("RGB", size, (0, 255, 0))
    quarter = size[0] // 4
    image.paste((255, 0, 0), (0, 0, quarter, size[1]))
    image.paste((0, 0, 255), (size[0] - quarter, 0, size[0], size[1]))
    return image


@pytest.fixture
def image_tree(tmp_path):
    files = {
        "train/cat/a.png": solid("RGB", (40, 30), (200, 10, 30)),
        "train/cat/b.jpg": solid("L", (25, 50), 77),
        "train/dog/c.png": solid("RGBA", (33, 33), (5, 250, 60, 128)),
        "train/dog/d.png": three_bands(),
        "train/eel/e.jpeg": solid("RGB", (64, 48), (20, 40, 220)),
        "val/cat/f.png": solid("L", (17, 19), 140),
        "val/dog/g.jpg": solid("RGB", (50, 20), (250, 250, 0)),
        "val/eel/h.png": solid("P", (30, 30), 3),
    }
    for name, image in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(tmp_path / name, quality=95)  # quality only matters for the JPEGs
    return tmp_path


def test_image_folder_loads_uint8_squares_with_labels(image_tree):
    data = build_data(DataConfig(name="imagefolder", path=str(image_tree), load_size=20))
    assert (data.num_classes, data.channels) == (3, 3)
    assert (len(data.train), len(data.memory), len(data.queries)) == (5, 5, 3)
    assert data.mean == (0.485, 0.456, 0.406) and data.std == (0.229, 0.224, 0.225)
    assert [label for _, label in data.train] == [0, 0, 1, 1, 2]
    assert [label for _, label in data.queries] == [0, 1, 2]
    for image, _ in list(data.train) + list(data.queries):
        assert image.shape == (3, 20, 20) and image.dtype == torch.uint8
    red, grey = data.train[0][0], data.train[1][0]
    assert torch.equal(red[:, 10, 10], torch.tensor([200, 10, 30], dtype=torch.uint8))
    assert (grey.int() - 77).abs().max() <= 2  # greyscale JPEG -> R = G = B
    # 40x20 -> shorter side already 20: the centre square is columns 10..29, all green.
    assert torch.equal(data.train[3][0], torch.tensor([0, 255, 0], dtype=torch.uint8).view(3, 1, 1).expand(3, 20, 20))
    batch, labels = next(iter(DataLoader(data.train, batch_size=5)))
    assert batch.shape == (5, 3, 20, 20) and labels.tolist() == [0, 0, 1, 1, 2]


def test_image_folder_without_val_split(image_tree):
    shutil.rmtree(image_tree / "val")
    with pytest.raises(DataNotFoundError, match=r"expected .*/train/<class>/\* and .*/val/<class>/\*"):
        build_data(DataConfig(name="imagefolder", path=str(image_tree), load_size=20))


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(DataNotFoundError, match="set data.path"):
        build_data(DataConfig(name="imagefolder", path=str(tmp_path / "imagenet")))


def test_image_folder_training_views_come_from_the_memory_files(image_tree):
    """With crops, training items are view lists of the same files, in the same order, as the
    k-NN memory's squares, and train_subset picks the same fixed files for both."""
    crops = CropsConfig(n_local=2, global_size=12, local_size=6)
    cfg = DataConfig(name="imagefolder", path=str(image_tree), load_size=20, train_subset=3)
    data = build_data(cfg, crops)
    squares_only = build_data(cfg)  # k-NN-only callers: training items are the squares
    assert data.train.dataset is not data.memory and squares_only.train.dataset is squares_only.memory
    assert list(data.train.indices) == list(squares_only.train.indices)
    assert list(data.train.indices) == list(fixed_subset(data.memory, 3).indices)
    assert [data.train.dataset.samples[i] for i in data.train.indices] == \
        [data.memory.samples[i] for i in data.train.indices]
    views, label = data.train[0]
    assert [tuple(v.shape) for v in views] == [(3, 12, 12)] * 2 + [(3, 6, 6)] * 2
    assert label == data.memory[data.train.indices[0]][1]
    red = build_data(DataConfig(name="imagefolder", path=str(image_tree), load_size=20), crops).train[0][0]
    assert all((v == torch.tensor([200, 10, 30], dtype=torch.uint8).view(3, 1, 1)).all() for v in red)
