"""Epochs a SIGKILL kept from sacred's record come back with the retry: the checkpoint holds every
epoch and k-NN record of the epochs it covers, and a resumed training gives them again."""
from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import pytest

from core.train import train
from reports.load import curves, load_study
from studies.record import experiment, recorded_run
from studies.run import main
from tests.helpers import micro_config
from tests.helpers import (SLOW_EPOCHS, by_label, checkpoint_epoch, epoch_steps, launcher,
                                      running_with_checkpoint, sacred, wait_for)

EPOCHS = 12
ITERATIONS_PER_EPOCH = 16  # SLOW_EPOCHS' 1024 images in batches of 64


class Interrupted(Exception):
    pass


def test_a_resumed_training_gives_its_checkpointed_records_first(tmp_path):
    config = micro_config(epochs=3, **{"eval.every_epochs": 1})
    first: list[tuple] = []

    def stop_in_epoch_3(kind, step, metrics):
        first.append((kind, step, dict(metrics)))
        if kind == "iteration" and step == 2 * 4:  # 4 iterations per epoch: the first of epoch 3
            raise Interrupted
    with pytest.raises(Interrupted):
        train(config, tmp_path, stop_in_epoch_3, progress=False)
    again: list[tuple] = []
    train(config, tmp_path, lambda kind, step, metrics: again.append((kind, step, dict(metrics))), progress=False)

    kept = [e for e in first if e[0] in ("epoch", "knn")]
    assert [(kind, step) for kind, step, _ in kept] == [("epoch", 1), ("knn", 1), ("epoch", 2), ("knn", 2)]
    assert again[:4] == kept  # the same records, the same values, before anything is trained
    assert [(kind, step) for kind, step, _ in again[4:] if kind != "iteration"] == [("epoch", 3), ("knn", 3)]
    assert [step for kind, step, _ in again if kind == "iteration"] == list(range(8, 12))  # resumed


def test_a_requeued_attempt_records_what_its_checkpoint_gives_again_once(tmp_path):
    """A requeue continues the attempt's sacred folder: the records a resumed training gives again
    that the folder holds already are not logged twice; those it lacks are."""
    config = micro_config()
    epoch = {"loss": 1.5, "kl": math.nan}

    def segment(records):
        def body(log):
            for kind, step, metrics in records:
                log(kind, step, metrics)
            return {"knn_top1": 50.0}
        ex = experiment("carry", "run-a1", str(tmp_path), config, {})
        recorded_run(ex, run_id="run-a1", sacred_root=str(tmp_path), observers={}, job_id="1", num_tasks=1,
                     started=time.time(), body=body, requeueing=lambda: False)
    segment([("epoch", 1, epoch), ("epoch", 2, epoch)])
    segment([("epoch", 1, epoch), ("epoch", 2, {**epoch, "loss": 1.25}), ("epoch", 3, epoch)])
    metrics = json.loads((tmp_path / "run-a1" / "metrics.json").read_text())
    assert metrics["epoch.kl"]["steps"] == [1, 2, 3]  # NaN equals NaN here
    assert metrics["epoch.loss"]["steps"] == [1, 2, 2, 3]  # a retrained epoch's new value is kept
    assert metrics["epoch.loss"]["values"] == [1.5, 1.5, 1.25, 1.5]


def flushed_epochs(trial) -> list[int] | None:
    """The epoch steps sacred has written to the attempt's metrics.json (None: caught mid-write)."""
    path = Path(trial.user_attrs["sacred_dir"]) / "metrics.json"
    try:
        return json.loads(path.read_text())["epoch.loss"]["steps"]
    except FileNotFoundError:
        return []
    except (KeyError, ValueError):  # not written yet, or being written
        return None


def kill_between_checkpoint_and_flush(trial) -> int:
    """SIGKILL the run's job at a moment when its checkpoint holds an epoch that sacred has not
    flushed yet (sacred writes metrics every 10 s); the epoch the checkpoint holds. The job is
    frozen while both are read, so what they say is what it dies with."""
    pid = trial.user_attrs["worker_pid"]

    def frozen_ahead() -> int | None:
        os.kill(pid, signal.SIGSTOP)
        epoch, flushed = checkpoint_epoch(trial.user_attrs["run_dir"]), flushed_epochs(trial)
        if flushed is not None and 3 <= epoch < EPOCHS and epoch > max(flushed, default=0):
            return epoch
        os.kill(pid, signal.SIGCONT)
        return None
    epoch = wait_for(frozen_ahead, 120, "a checkpoint ahead of sacred's metrics.json")
    os.kill(pid, signal.SIGKILL)
    return epoch


def test_epochs_a_sigkill_kept_from_sacred_are_recorded_by_the_retry(write_study, tmp_path):
    path = write_study("carry", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9]}],
                       set={"epochs": EPOCHS, **SLOW_EPOCHS})
    results = tmp_path / "results"
    proc = launcher(path, "--results", results)
    try:
        (trial,) = wait_for(lambda: running_with_checkpoint(results, "carry", 1, 1), 120, "the run to checkpoint")
        checkpointed = kill_between_checkpoint_and_flush(trial)
        out = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 1 and "FAILED" in out, out

    assert main([str(path), "--results", str(results), "--retry-failed"]) == 0
    killed, retried = by_label(results, "carry")[trial.user_attrs["label"]]
    lost = set(range(1, checkpointed + 1)) - set(flushed_epochs(killed))
    assert lost  # the kill landed where the fault did: trained, checkpointed, never flushed
    assert epoch_steps(retried) == list(range(1, EPOCHS + 1))  # every epoch once, the lost ones too
    carried = dict(zip(epoch_steps(retried), sacred(retried, "metrics.json")["epoch.loss"]["values"]))
    if flushed_epochs(killed):  # what both attempts recorded is the same training, not a second one
        earlier = sacred(killed, "metrics.json")["epoch.loss"]
        assert all(carried[step] == value for step, value in zip(earlier["steps"], earlier["values"]))
    iterations = sacred(retried, "metrics.json")["iteration.loss"]["steps"]
    assert iterations[0] == checkpointed * ITERATIONS_PER_EPOCH  # resumed from the checkpoint, not retrained

    frame = curves(load_study(results))
    loss = frame[(frame["kind"] == "epoch") & (frame["metric"] == "loss")]
    assert sorted(loss["step"]) == list(range(1, EPOCHS + 1))  # the run's curve: each epoch once
