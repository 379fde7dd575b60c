"""A user's own data: ``--data PATH`` alone is recognised (ImageFolder, a folder of unlabelled
images, Fashion-MNIST's IDX files), unlabelled images train with k-NN on ``data.eval_path`` or
with their evaluation skipped and said why, and every bad folder is one line, exit 2, nothing
created. The images are real PNG and JPEG files written with PIL; the trainings are micro-sized."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

import core.baselines
import core.train
import studies.run
from core import cli, preflight
from core.config import CropsConfig, DataConfig
from core.data import build_data
from core.profiles import profile_config
from core.train import train
from tests.helpers import by_label, micro_config

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
COLOURS = {"red": (220, 20, 30), "blue": (20, 40, 220), "green": (30, 200, 40)}


def write_images(folder: Path, names: list[str], colour: tuple[int, int, int] = (120, 120, 120)) -> None:
    """Real image files of a few sizes and modes, PNG and JPEG, each with a stripe of ``colour``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        size = (40 + 7 * i, 30 + 5 * (i % 3))
        image = Image.new("RGB", size, (255 - 20 * i % 255, 90, 60))
        image.paste(colour, (0, 0, size[0] // 2, size[1]))
        (image.convert("L") if i % 4 == 3 else image).save(folder / name, quality=90)


def image_folder(root: Path, classes=("red", "blue"), train=3, val=2) -> Path:
    for cls in classes:
        write_images(root / "train" / cls, [f"{cls}{i}.png" if i % 2 else f"{cls}{i}.jpg" for i in range(train)],
                     COLOURS[cls])
        write_images(root / "val" / cls, [f"v{cls}{i}.png" for i in range(val)], COLOURS[cls])
    return root


def photos(root: Path) -> Path:
    """12 unlabelled images: 8 in the folder itself, 4 in a subfolder, and a file that is not one."""
    write_images(root, [f"img{i}.png" if i % 2 else f"img{i}.jpeg" for i in range(8)])
    write_images(root / "2024-05", [f"more{i}.png" for i in range(4)])
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def folders(tmp_path):
    return {"tree": image_folder(tmp_path / "tree"), "photos": photos(tmp_path / "photos")}


def test_the_layout_is_recognised(folders, tmp_path):
    def kind(path) -> str:
        return preflight.dataset(DataConfig(name="auto", path=str(path)))
    assert kind(FASHION_MNIST) == "fashion_mnist"
    assert kind(folders["tree"]) == "imagefolder"
    assert kind(folders["photos"]) == "images"
    # --data alone: whatever data.name the profile had, the folder decides
    for profile, path, expected in [("tiny", folders["tree"], "imagefolder"), ("vits16_imagenet", FASHION_MNIST,
                                                                                "fashion_mnist")]:
        config = profile_config(profile, cli.data_overrides(str(path)))
        assert (config.data.name, preflight.dataset(config.data)) == ("auto", expected)


def test_an_image_folder_counts_every_image_under_it(folders):
    config = DataConfig(name="auto", path=str(folders["photos"]))
    assert preflight.train_images(config, enough=100) == 12  # 8 + 4 in the subfolder, not notes.txt
    assert preflight.train_images(config, enough=5) == 5  # counted no further than needed
    files = list(preflight.image_files(folders["photos"]))
    assert files == sorted(files[:8]) + sorted(files[8:]) and all("2024-05" in f for f in files[8:])


def test_image_files_train_as_views_and_the_eval_folder_gives_the_knn(folders):
    crops = CropsConfig(n_local=2, global_size=16, local_size=8)
    alone = build_data(DataConfig(name="images", path=str(folders["photos"]), load_size=20), crops)
    assert (len(alone.train), alone.memory, alone.queries, alone.num_classes) == (12, None, None, 0)
    assert "holds unlabelled images and data.eval_path is empty" in alone.unlabelled
    views, _ = alone.train[11]  # the last file: the subfolder's last image, 40 + 7 * 3 = 61 x 45 px
    assert [tuple(v.shape) for v in views] == [(3, 16, 16)] * 2 + [(3, 8, 8)] * 2
    assert alone.train.samples[11][0].endswith("2024-05/more3.png")
    labelled = build_data(DataConfig(name="images", path=str(folders["photos"]), eval_path=str(folders["tree"]),
                                     load_size=20), crops)
    assert (len(labelled.train), len(labelled.memory), len(labelled.queries)) == (12, 6, 4)
    assert labelled.num_classes == 2 and labelled.unlabelled is None
    assert [label for _, label in labelled.queries] == [0, 0, 1, 1]  # blue, then red: sorted class names
    assert labelled.queries[0][0].shape == (3, 20, 20)


def iterations(config, out: Path) -> tuple[dict, list[int]]:
    steps: list[int] = []
    result = train(config, out, lambda kind, step, _: steps.append(step) if kind == "iteration" else None,
                   progress=False)
    return result, steps


def own_data(**overrides):
    """micro on a 12-image folder in batches of 4: 3 iterations per epoch, 3 epochs."""
    return micro_config(**{"data.name": "auto", "data.train_subset": 0, "batch_size": 4, "precision": "fp32",
                           "eval.max_memory": 0, "eval.max_queries": 0, **overrides})


def test_unlabelled_images_train_with_knn_on_the_eval_folder(folders, tmp_path):
    config = own_data(**{"data.path": str(folders["photos"]), "data.eval_path": str(folders["tree"])})
    result, steps = iterations(config, tmp_path / "run")
    assert steps == list(range(9))  # 12 training images / 4 = 3 iterations, x 3 epochs
    # 4 queries (val/ of the eval folder): every accuracy is a multiple of 25; with its 2 classes
    # the top-5 is the top-2, always right
    for key in ("knn_top1", "student_knn_top1", "linear_top1", "student_linear_top1"):
        assert result[key] in (0.0, 25.0, 50.0, 75.0, 100.0), (key, result[key])
    assert result["knn_top5"] == result["student_knn_top5"] == 100.0
    assert "knn_skipped" not in result


def test_unlabelled_images_without_labels_train_and_say_why_there_is_no_knn(folders, tmp_path):
    result, steps = iterations(own_data(**{"data.path": str(folders["photos"])}), tmp_path / "run")
    assert steps == list(range(9)) and result["epochs"] == 3 and result["collapse"] in ("none", "uniform",
                                                                                       "one dimension")
    assert not any(key.endswith("top1") for key in result)
    why = result["knn_skipped"]
    assert why == result["student_knn_skipped"]
    assert why.startswith(f"k-NN and linear probe skipped: data.path {folders['photos']} holds unlabelled images")
    assert "set data.eval_path to a labelled ImageFolder" in why
    assert (tmp_path / "run" / "checkpoint.pth").exists()


def test_a_study_on_an_image_folder_given_by_data_alone_trains(folders, tmp_path, write_study):
    """The issue's case: ``--data /my/imagefolder`` on tiny once failed every run."""
    study = write_study("own", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9, 0.99]}],
                        set={"data.train_subset": 0, "batch_size": 2, "eval.max_memory": 0, "eval.max_queries": 0})
    code = studies.run.main([str(study), "--data", str(folders["tree"]), "--cluster", "debug",
                             "--results", str(tmp_path / "results")])
    assert code == 0
    runs = by_label(tmp_path / "results", "own")
    assert sorted(runs) == ["m=0.9 seed=0", "m=0.99 seed=0"]
    for (trial,) in runs.values():
        assert trial.value in (0.0, 25.0, 50.0, 75.0, 100.0)  # k-NN top-1 of the 4 val/ images


def refused(main, argv: list[str], tmp_path: Path, capsys) -> str:
    before = set(tmp_path.rglob("*"))
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert set(tmp_path.rglob("*")) == before  # no run folder, results, ledger or journal
    return lines[0]


def bad_folders(root: Path) -> dict[str, Path]:
    image_folder(root / "no_val", classes=("red",))
    shutil.rmtree(root / "no_val" / "val")
    image_folder(root / "classes_differ", classes=("red", "blue"))
    (root / "classes_differ" / "val" / "blue").rename(root / "classes_differ" / "val" / "green")
    image_folder(root / "empty_class", classes=("red", "blue"))
    for image in (root / "empty_class" / "val" / "blue").iterdir():
        image.unlink()
    (root / "empty_class" / "val" / "blue" / "README").write_text("no image")
    write_images(root / "class_folders" / "red", ["a.png"])
    write_images(root / "class_folders" / "blue", ["b.png"])
    (root / "empty").mkdir()
    (root / "a_file").write_text("not a folder")
    (root / "half_idx").mkdir()
    shutil.copy(Path(FASHION_MNIST) / "train-images-idx3-ubyte.gz", root / "half_idx")
    return {p.name: p for p in root.iterdir()}


DATA_CASES = [  # (folder, what the one line says)
    ("empty", ["data.path {p} is not a data set (it holds nothing)", "an ImageFolder root (train/ and val/"]),
    ("class_folders", ["is not a data set (it holds blue/, red/)", "move the class folders into train/ and val/",
                       "set data.name=images"]),
    ("no_val", ["ImageFolder split {p}/val not found", "expected {p}/train/<class>/*"]),
    ("classes_differ", ["both need the same class folders"]),
    ("empty_class", ["class folder {p}/val/blue holds no image file"]),
    ("a_file", ["data.path {p} is a file"]),
    ("nowhere", ["data.path {p} does not exist on this machine"]),
    ("half_idx", ["Fashion-MNIST not found: train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz"]),
]
COMMANDS = {  # how each command is given a data folder
    "train": (core.train.main,
              lambda p, t: ["--set", "data.name=auto", "--set", f"data.path={p}", "--out", f"{t}/run"]),
    "baselines": (core.baselines.main, lambda p, t: ["--data", str(p)]),
    "study": (studies.run.main, lambda p, t: ["centering_momentum", "--data", str(p), "--results", f"{t}/results"]),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("folder, fragments", DATA_CASES, ids=[case for case, _ in DATA_CASES])
def test_a_bad_data_folder_is_one_line_exit_2_and_creates_nothing(folder, fragments, command, tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = bad_folders(tmp_path / "data").get(folder, tmp_path / "data" / folder)
    main, argv = COMMANDS[command]
    line = refused(main, argv(path, tmp_path), tmp_path, capsys)
    for fragment in fragments:
        assert fragment.format(p=path) in line, line


@pytest.mark.parametrize("command, argv, fragments", [
    ("baselines", ["--data", "{photos}", "--set", "data.train_subset=0"],
     ["a baseline (a k-NN accuracy) needs labels: data.path {photos} holds unlabelled images and data.eval_path "
      "is empty"]),
    ("study", ["centering_momentum", "--data", "{photos}", "--set", "data.train_subset=0", "--set", "batch_size=4"],
     ["every run on profile tiny: the study's metric knn_top1 needs labels", "set data.eval_path"]),
    ("train", ["--set", "data.name=auto", "--set", "data.path={photos}", "--set", "data.eval_path={tmp}/nowhere"],
     ["ImageFolder not found: data.eval_path {tmp}/nowhere does not exist", "set data.eval_path"]),
    ("study", ["centering_momentum", "--data", "{photos}", "--set", "data.eval_path={photos}"],
     ["ImageFolder split {photos}/train not found", "set data.eval_path"]),
    ("train", ["--set", "data.eval_path={tree}"], ["data.eval_path is for image folders: Fashion-MNIST"]),
    ("baselines", ["--data", FASHION_MNIST, "--set", "data.eval_path={tree}"], ["data.eval_path is for image folders"]),
    ("study", ["centering_momentum", "--data", "{photos}", "--set", "data.eval_path={tree}",
               "--set", "data.train_subset=13"], ["data.train_subset=13 exceeds the 12 train images in {photos}"]),
    ("baselines", ["--data", ""], ["--data '': give the data set's folder"]),
])
def test_unlabelled_data_is_refused_where_labels_are_needed(command, argv, fragments, folders, tmp_path, capsys,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    main = COMMANDS[command][0]
    names = {"photos": folders["photos"], "tree": folders["tree"], "tmp": tmp_path}
    writes = {"train": ["--out", f"{tmp_path}/run"], "study": ["--results", f"{tmp_path}/results"]}
    line = refused(main, [a.format(**names) for a in argv] + writes.get(command, []), tmp_path, capsys)
    for fragment in fragments:
        assert fragment.format(**names) in line, line


def test_only_a_metric_that_needs_labels_refuses_unlabelled_data(folders, write_study):
    from studies import plan, spec
    axis = {"name": "m", "key": "loss.center_momentum", "values": [0.9, 0.99]}
    for metric, needs_labels in (("loss", False), ("knn_top1", True), ("linear_top1", True)):
        study = spec.load(str(write_study(metric, axes=[axis], metric=metric,
                                          set={"data.train_subset": 0, "batch_size": 4})))
        runs = plan.expand(study, "tiny", cli.data_overrides(str(folders["photos"])))
        problems = plan.data_problems(runs, "tiny", 1, study.labels_for)
        assert [f"the study's metric {metric} needs labels" in line for line in problems] == [True] * needs_labels
