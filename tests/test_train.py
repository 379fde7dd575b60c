"""Whole trainings on real Fashion-MNIST at a micro scale: resume, errors, logging."""
import json
import math

import pytest
import torch

from core.checkpoint import load_checkpoint
from core.train import CHECKPOINT, NonFiniteLossError, ResumeMismatchError, train
from tests.micro import micro_config


class Interrupted(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    config = micro_config(precision="fp32")
    straight = train(config, tmp_path / "straight", progress=False)

    def stop_after_epoch_2(kind, step, metrics):
        if kind == "epoch" and step == 2:
            raise Interrupted
    with pytest.raises(Interrupted):
        train(config, tmp_path / "resumed", stop_after_epoch_2, progress=False)
    assert load_checkpoint(tmp_path / "resumed" / CHECKPOINT)["epoch"] == 1
    resumed = train(config, tmp_path / "resumed", progress=False)

    for key in ("knn_top1", "knn_top5", "loss", "target_entropy", "kl"):
        assert resumed[key] == straight[key], key
    a = load_checkpoint(tmp_path / "straight" / CHECKPOINT)
    b = load_checkpoint(tmp_path / "resumed" / CHECKPOINT)
    for name in a["teacher"]:
        assert torch.equal(a["teacher"][name], b["teacher"][name]), name
    assert torch.equal(a["loss"]["center"], b["loss"]["center"])
    # a finished run restarted returns its recorded result without training again
    again = train(config, tmp_path / "straight", progress=False)
    assert again["knn_top1"] == straight["knn_top1"] and again["loss"] == straight["loss"]


def test_callback_receives_every_metric(tmp_path):
    events = []
    config = micro_config(epochs=2, **{"eval.every_epochs": 1})
    result = train(config, tmp_path, lambda kind, step, m: events.append((kind, step, dict(m))),
                   progress=False)
    kinds = [e[0] for e in events]
    assert kinds.count("epoch") == 2 and kinds.count("knn") == 2
    iterations = [e for e in events if e[0] == "iteration"]
    assert [e[1] for e in iterations] == list(range(8))  # 256 images / 64, log_every = 1
    assert set(iterations[0][2]) == {"loss", "target_entropy", "kl", "lr", "weight_decay", "momentum",
                                     "teacher_temp", "center_norm"}
    for _, _, metrics in events:
        assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    epoch = [e[2] for e in events if e[0] == "epoch"][-1]
    assert epoch["kl"] == pytest.approx(epoch["loss"] - epoch["target_entropy"], abs=1e-4)
    assert 0 <= epoch["target_entropy"] <= math.log(64) + 1e-4
    assert 0 <= result["knn_top1"] <= result["knn_top5"] <= 100
    json.dumps(result)


def test_non_finite_loss_stops_with_clear_error(tmp_path):
    config = micro_config(**{"optim.lr": 1e30, "optim.warmup_epochs": 0, "optim.clip_grad": 0.0})
    with pytest.raises(NonFiniteLossError, match="optim.lr"):
        train(config, tmp_path, progress=False)


def test_resume_with_another_config_is_refused(tmp_path):
    train(micro_config(epochs=2), tmp_path, progress=False)
    with pytest.raises(ResumeMismatchError, match="new output folder"):
        train(micro_config(epochs=2, seed=1), tmp_path, progress=False)
