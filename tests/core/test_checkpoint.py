"""A torn or corrupt newest checkpoint: a real micro training resumes from the one before it and
ends exactly as if nothing had happened; with no readable checkpoint it says what to delete."""
import os
import shutil

import pytest

from core.checkpoint import CheckpointError, load_checkpoint, previous_path, save_checkpoint
from core.train import CHECKPOINT, train
from tests.helpers import micro_config

RESULT_KEYS = ("knn_top1", "knn_top5", "loss", "target_entropy", "kl")


def truncate(path):
    """What a kill mid-write leaves where rename is not atomic: the first half of the file."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def corrupt(path):
    """Damaged bytes in the middle (tensor data), which torch's own reader would load silently."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(255 - b for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A micro run trained for 2 epochs without interruption: its folder and its result."""
    config = micro_config(epochs=2, precision="fp32")
    folder = tmp_path_factory.mktemp("straight")
    return config, folder, train(config, folder, progress=False)


@pytest.mark.parametrize("damage", [truncate, corrupt])
def test_unreadable_checkpoint_resumes_from_the_previous_epoch_and_ends_the_same(finished_run, tmp_path,
                                                                                damage, capsys):
    config, straight, expected = finished_run
    folder = tmp_path / "run"
    shutil.copytree(straight, folder)
    newest = folder / CHECKPOINT
    assert load_checkpoint(newest)["epoch"] == 2 and load_checkpoint(previous_path(newest))["epoch"] == 1
    damage(newest)
    capsys.readouterr()

    events = []
    resumed = train(config, folder, lambda kind, step, m: events.append((kind, step)), progress=False)

    lines = [line for line in capsys.readouterr().out.splitlines() if "resuming from" in line]
    assert len(lines) == 1 and str(newest) in lines[0] and "is unreadable" in lines[0]
    assert "checkpoint.prev.pth, the epoch before (epoch 1)" in lines[0]
    assert [step for kind, step in events if kind == "epoch"] == [1, 2]  # epoch 1 as its checkpoint holds it
    assert [step for kind, step in events if kind == "iteration"] == [4, 5, 6, 7]  # epoch 2 trained again
    assert {k: resumed[k] for k in RESULT_KEYS} == {k: expected[k] for k in RESULT_KEYS}
    assert (folder / f"{CHECKPOINT}.unreadable").is_file()
    assert load_checkpoint(newest)["epoch"] == 2 and load_checkpoint(previous_path(newest))["epoch"] == 1


def test_no_readable_checkpoint_names_the_files_to_delete(finished_run, tmp_path):
    _, straight, _ = finished_run
    newest = tmp_path / CHECKPOINT
    shutil.copy(straight / CHECKPOINT, newest)
    truncate(newest)
    with pytest.raises(CheckpointError) as only:
        load_checkpoint(newest)
    assert str(only.value).count("\n") == 0 and f"rm {newest})" in str(only.value)
    assert "is unreadable" in str(only.value) and "start the run over" in str(only.value)

    shutil.copy(straight / CHECKPOINT, previous_path(newest))
    corrupt(previous_path(newest))
    with pytest.raises(CheckpointError, match=f"delete them to start the run over \\(rm {newest} "
                                              f"{previous_path(newest)}\\)"):
        load_checkpoint(newest)
    assert newest.is_file() and previous_path(newest).is_file()  # nothing is moved when nothing loads


def test_a_failed_write_leaves_the_checkpoints_as_they_were(finished_run, tmp_path):
    """A save that fails midway (here torch cannot pickle part of the state; a full disk fails
    the same write) keeps the newest checkpoint and leaves no temporary file."""
    _, straight, _ = finished_run
    newest = tmp_path / CHECKPOINT
    shutil.copy(straight / CHECKPOINT, newest)
    before = newest.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(newest, {"epoch": 3, "bad": lambda: None})
    assert newest.read_bytes() == before and not previous_path(newest).exists()
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT]
