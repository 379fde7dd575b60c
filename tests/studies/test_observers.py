"""Live curves (``--observer tensorboard=DIR`` / ``wandb=PROJECT``, ``core.live``): real writers,
read back with TensorBoard's own event reader and W&B's offline run."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from core.live import TensorBoardCurves
from core.train import train
from studies.record import experiment, recorded_run
from studies.run import main
from tests.helpers import REPO, MICRO_SET, by_label, micro_config, sacred


class Interrupted(Exception):
    pass


def events(folder: Path) -> EventAccumulator:
    reader = EventAccumulator(str(folder), size_guidance={SCALARS: 0}, purge_orphaned_data=False)
    reader.Reload()
    return reader


def points(folder: Path, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events(folder).Scalars(tag)]


def test_a_study_draws_every_metric_of_each_run_in_its_own_tensorboard_run(write_study, tmp_path):
    path = write_study("tb", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.0, 0.9]}])
    board = tmp_path / "board"
    assert main([str(path), "--results", str(tmp_path / "results"), "--cluster", "debug",
                 "--observer", f"tensorboard={board}"]) == 0

    runs = by_label(tmp_path / "results", "tb")
    assert sorted(p.relative_to(board).as_posix() for p in board.glob("*/*/*")) == sorted(
        f"tb/{label}/{trial.user_attrs['run_id']}" for label, (trial,) in runs.items())
    iterations = MICRO_SET["epochs"] * MICRO_SET["data.train_subset"] // MICRO_SET["batch_size"]
    for label, (trial,) in runs.items():
        folder = board / "tb" / label / trial.user_attrs["run_id"]
        recorded = sacred(trial, "metrics.json")
        assert set(events(folder).Tags()["scalars"]) == {name.replace(".", "/", 1) for name in recorded}
        for name, series in recorded.items():  # the same points as sacred's record, each once
            drawn = points(folder, name.replace(".", "/", 1))
            assert [s for s, _ in drawn] == series["steps"]
            assert [v for _, v in drawn] == pytest.approx(series["values"], nan_ok=True)  # float32 in TensorBoard
        assert [s for s, _ in points(folder, "epoch/loss")] == [1, 2, 3]
        assert [s for s, _ in points(folder, "iteration/loss")] == list(range(iterations))
        assert points(folder, "knn/top1")[-1][1] == pytest.approx(trial.value, abs=1e-4)


def test_a_resumed_training_draws_no_point_twice(tmp_path):
    """core.train gives a resumed run's checkpointed records again and retrains from the last
    checkpoint; the folder's own points (also those no checkpoint kept) are not written again."""
    config = micro_config(epochs=3, **{"eval.every_epochs": 1})
    board = tmp_path / "board"
    first = TensorBoardCurves(board)

    def stop_in_epoch_3(kind, step, metrics):
        first(kind, step, metrics)
        if kind == "iteration" and step == 2 * 4 + 1:  # 4 iterations per epoch: the second of epoch 3
            raise Interrupted
    with pytest.raises(Interrupted):
        train(config, tmp_path / "run", stop_in_epoch_3, progress=False)
    first.close("FAILED")  # what a SIGKILL after TensorBoard's last flush leaves
    assert [s for s, _ in points(board, "iteration/loss")] == list(range(10))

    again = TensorBoardCurves(board)
    train(config, tmp_path / "run", again, progress=False)
    again.close("COMPLETED")
    assert [s for s, _ in points(board, "iteration/loss")] == list(range(12))
    assert [s for s, _ in points(board, "epoch/loss")] == [1, 2, 3]
    assert [s for s, _ in points(board, "knn/top1")] == [1, 2, 3]


def test_a_requeued_segment_adds_only_new_points_and_the_hparams_once(tmp_path):
    config = micro_config()
    board = tmp_path / "board"

    def segment(records, status_code=None):
        def body(log):
            for kind, step, metrics in records:
                log(kind, step, metrics)
            if status_code is not None:
                raise SystemExit(status_code)
            return {"knn_top1": 50.0}
        ex = experiment("carry", "run-a1", str(tmp_path / "sacred"), config, {"label": "m=0.9 seed=0"})
        ex.add_config({"params": {"m": 0.9, "variant": "both", "epochs": 14}})  # what the job adds
        recorded_run(ex, run_id="run-a1", sacred_root=str(tmp_path / "sacred"),
                     observers={"tensorboard": str(board)}, job_id="1", num_tasks=1, started=time.time(),
                     body=body, requeueing=lambda: True)
    with pytest.raises(SystemExit):
        segment([("epoch", 1, {"loss": 1.5}), ("epoch", 2, {"loss": 1.25})], status_code=144)
    segment([("epoch", 1, {"loss": 1.5}), ("epoch", 2, {"loss": 1.25}), ("epoch", 3, {"loss": 1.0}),
             ("knn", 3, {"top1": 50.0})])

    folder = board / "carry" / "m=0.9 seed=0" / "run-a1"
    assert points(folder, "epoch/loss") == [(1, 1.5), (2, 1.25), (3, 1.0)]
    hparams = {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
               for tag, content in events(folder).PluginTagToContent("hparams").items()}
    start = hparams["_hparams_/session_start_info"].session_start_info.hparams
    assert (start["m"].number_value, start["variant"].string_value, start["epochs"].number_value) == (0.9, "both", 14)
    assert hparams["_hparams_/session_end_info"].session_end_info.status == api_pb2.STATUS_SUCCESS
    experiment_events = [e for e in _all_summaries(folder) if e == "_hparams_/experiment"]
    assert len(experiment_events) == 1  # the requeued segment did not write them again


def _all_summaries(folder: Path) -> list[str]:
    """Every summary tag of every event in ``folder``'s files, in order, repeats kept."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [value.tag for path in sorted(folder.glob("events.out.tfevents.*"))
            for event in EventFileLoader(str(path)).Load() for value in event.summary.value]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline, writing under ``tmp_path``, through its own variables, which the observer
    leaves alone; W&B reads them once per process, so its process state is torn down around."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    wandb.teardown()
    yield wandb
    wandb.teardown()


def test_a_wandb_run_per_attempt_grouped_by_study_offline(tmp_path, offline_wandb):
    from core.live import WandbCurves

    curves = WandbCurves("dino", "abc123-a1", "m=0.9 seed=0", "centering", {"dino": {"epochs": 3}, "seed": 0})
    for step, loss in [(1, 1.5), (2, 1.25), (3, 1.0)]:
        curves("epoch", step, {"loss": loss})
    curves("knn", 3, {"top1": 42.0})
    run = curves.run
    assert (run.id, run.name, run.group, run.project, run.settings.mode) == (
        "abc123-a1", "m=0.9 seed=0", "centering", "dino", "offline")
    assert dict(run.config) == {"dino": {"epochs": 3}, "seed": 0}
    summary = dict(run.summary)
    assert (summary["epoch/loss"], summary["epoch/step"], summary["knn/top1"], summary["knn/step"]) == (1.0, 3, 42, 3)
    curves.close("COMPLETED")
    assert offline_wandb.run is None
    assert [p.name.rsplit("-", 2)[-2:] for p in (tmp_path / "wandb").glob("offline-run-*")] == [["abc123", "a1"]]


def test_a_requeued_attempt_continues_its_wandb_run(tmp_path, offline_wandb):
    config = micro_config()

    def segment(requeue: bool):
        def body(log):
            log("epoch", 1, {"loss": 1.5})
            if requeue:
                raise SystemExit(144)
            return {"knn_top1": 50.0}
        ex = experiment("carry", "run-a1", str(tmp_path / "sacred"), config, {"label": "m=0.9 seed=0"})
        return recorded_run(ex, run_id="run-a1", sacred_root=str(tmp_path / "sacred"), observers={"wandb": "dino"},
                            job_id="1", num_tasks=1, started=time.time(), body=body, requeueing=lambda: requeue)
    with pytest.raises(SystemExit):
        segment(requeue=True)
    assert segment(requeue=False)["knn_top1"] == 50.0
    # offline, W&B writes each start of the run beside the others, under the one id (wandb sync joins them)
    assert [p.name.endswith("-run-a1") for p in (tmp_path / "wandb").glob("offline-run-*")] == [True, True]


def refused(*argv: str, hide: str | None = None) -> subprocess.CompletedProcess:
    """``studies.run`` in a fresh Python, with the package ``hide`` made unimportable there."""
    code = (f"import sys; sys.modules[{hide!r}] = None\n" if hide else "") + \
        "from studies.run import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", "import sys\n" + code, *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("observer, hide, says", [
    ("wandb=dino", "wandb", "the wandb package is not installed; pip install wandb"),
    ("tensorboard={board}", "tensorboard", "the tensorboard package is not installed; pip install tensorboard"),
    ("wandb=team/dino", None, "a W&B project name cannot hold /"),
    ("tensorboard={file}", None, "is a file; give a folder"),
    ("tensorbord=x", None, "write NAME=ARGUMENT with NAME one of tensorboard=DIR, wandb=PROJECT"),
])
def test_an_observer_that_cannot_work_is_refused_before_anything_is_made(write_study, tmp_path, observer, hide, says):
    path = write_study("refuse", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9]}])
    (tmp_path / "a_file").write_text("")
    observer = observer.format(board=tmp_path / "board", file=tmp_path / "a_file")
    done = refused(str(path), "--results", str(tmp_path / "results"), "--observer", observer, hide=hide)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: --observer {observer}: ") and says in line
    assert not (tmp_path / "results").exists() and not (tmp_path / "board").exists()
