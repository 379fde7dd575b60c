"""Whole trainings on real Fashion-MNIST at a micro scale: resume, errors, logging."""
import json
import math
import os
import re
import sys
import tomllib

import pytest
import torch

from core import progress
from core.baselines import baselines
from core.checkpoint import load_checkpoint
from core.collapse import CollapseRule
from core.config import DINOConfig
from core.data import build_data
from core.distributed import init_distributed
from core.train import CHECKPOINT, NonFiniteLossError, ResumeMismatchError, Trainer, train
from core.profiles import profile_config
from core.train import default_run_dir
from core.train import main as train_main
from tests.helpers import MICRO_SET, micro_config, set_args


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
    assert set(iterations[0][2]) == {"loss", "target_entropy", "kl", "student_entropy", "lr", "weight_decay",
                                     "momentum", "teacher_temp", "center_norm"}
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


def test_last_layer_gets_no_gradient_while_frozen(tmp_path):
    config = micro_config(**{"head.freeze_last_layer": 1, "optim.warmup_epochs": 0})  # 1 epoch = 4 steps
    run = Trainer(config, build_data(config.data), init_distributed())
    last = run.student_module.head.last_layer
    initial = [p.detach().clone() for p in last.parameters()]
    other = run.student_module.head.mlp[0].weight.detach().clone()
    images = torch.stack([run.data.train[i][0] for i in range(config.batch_size)])
    for it in range(4):
        run.step(images, 0, it)
    assert all(torch.equal(p, q) for p, q in zip(last.parameters(), initial))
    assert not torch.equal(run.student_module.head.mlp[0].weight, other)  # the rest did train
    run.step(images, 1, 4)
    assert not all(torch.equal(p, q) for p, q in zip(last.parameters(), initial))


def test_teacher_and_student_knn_are_both_recorded(tmp_path):
    events = []
    result = train(micro_config(epochs=2, **{"teacher.update": "student_copy"}), tmp_path,
                   lambda kind, step, m: events.append((kind, dict(m))), progress=False)
    knn = [m for kind, m in events if kind == "knn"][-1]
    assert set(knn) == {"top1", "top5", "linear_top1", "student_top1", "student_top5", "student_linear_top1"}
    # a student-copy teacher has the student's weights after every step: the same features
    assert result["student_knn_top1"] == result["knn_top1"] and result["student_knn_top5"] == result["knn_top5"]
    assert result["student_linear_top1"] == result["linear_top1"]
    ema = train(micro_config(epochs=2), tmp_path / "ema", progress=False)
    assert 0 <= ema["student_knn_top1"] <= ema["student_knn_top5"] <= 100


def test_a_learnable_gain_logs_the_effective_temperatures(tmp_path):
    events = []
    config = micro_config(epochs=2, **{"head.norm_last_layer": False, "optim.lr": 0.05})
    train(config, tmp_path, lambda kind, step, m: events.append((kind, dict(m))), progress=False)
    epoch = [m for kind, m in events if kind == "epoch"][-1]
    state = load_checkpoint(tmp_path / CHECKPOINT)
    gain = "head.last_layer.parametrizations.weight.original0"
    student_gain, teacher_gain = state["student"][gain].mean().item(), state["teacher"][gain].mean().item()
    assert student_gain != 1.0  # the gain was trained
    assert epoch["effective_student_temp"] == pytest.approx(0.1 / student_gain)
    assert epoch["effective_teacher_temp"] == pytest.approx(epoch["teacher_temp"] / teacher_gain)
    fixed = [m for kind, m in _events(micro_config(epochs=1), tmp_path / "fixed") if kind == "epoch"]
    assert "effective_student_temp" not in fixed[-1]  # the paper's head: tau is what it says


def test_an_untrained_run_scores_its_random_init_baseline():
    """The baseline and a run extract k-NN features under the same precision (here bf16)."""
    config = micro_config()
    assert config.precision == "bf16"
    run = Trainer(config, build_data(config.data), init_distributed())
    assert run.evaluate(show=False)["top1"] == baselines(config)["random_init"]["top1"]


@pytest.mark.parametrize("overrides", [{"backbone.name": "vit_no_such_model"}, {"batch_size": 512},
                                       {"data.path": "/nonexistent"}, {"optim.lr": "nan"}])
def test_core_train_refuses_before_creating_its_folder(tmp_path, capsys, overrides):
    args = set_args(overrides)
    args += ["--set", "data.train_subset=256", "--out", str(tmp_path / "run")]
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert next(iter(overrides)).split(".")[-1] in err or "Fashion-MNIST" in err
    assert not (tmp_path / "run").exists()


def _events(config, out):
    events = []
    train(config, out, lambda kind, step, m: events.append((kind, dict(m))), progress=False)
    return events


def test_the_profiles_head_keeps_its_gain_at_one(tmp_path):
    """tiny's head is the paper's: the weight-norm gain is fixed, so tau_s and tau_t are what
    the config says in every arm (a learned gain would make them tau / g_k, differently per arm)."""
    train(micro_config(epochs=2), tmp_path, progress=False)
    state = load_checkpoint(tmp_path / CHECKPOINT)
    for net in ("student", "teacher"):
        assert torch.equal(state[net]["head.last_layer.parametrizations.weight.original0"],
                           torch.ones(64, 1)), net


def test_print_config_round_trips_and_default_folders_differ_per_config(capsys):
    assert train_main(["--set", "teacher.update=previous_epoch", "--print-config"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert DINOConfig.from_dict(printed) == profile_config("tiny", {"teacher.update": "previous_epoch"})
    one, other = (default_run_dir("tiny", profile_config("tiny", o)) for o in ({}, {"teacher.momentum": 0.99}))
    assert one != other and one.parent == other.parent
    assert default_run_dir("tiny", profile_config("tiny")) == one  # stable: a rerun resumes its own


def test_a_run_records_its_own_collapse_verdict(tmp_path):
    """The run records the verdict of the collapse rule on its own final h(P_t) and KL, so the
    ledger, the dashboard and the reports read one decision (the rule's thresholds are tested
    on hand values in tests/reports/test_reports.py)."""
    result = train(micro_config(epochs=2, **{"loss.sharpening": False}), tmp_path, progress=False)
    assert result["collapse"] == CollapseRule().classify(result["target_entropy"], result["kl"], 64)
    assert result["collapse"] in ("none", "one dimension", "uniform", "other")
    assert 0 < result["student_entropy"] <= math.log(64) + 1e-4


# -- what a run shows while it trains -----------------------------------------------------------------
PROGRESS = re.compile(r"^epoch (\d)/3  it (\d)/2  loss [\d.]+  h\(P_t\) [\d.]+  KL [\d.]+  [\d.e-]+ s/it  "
                      r"ETA epoch (\d+:\d\d:\d\d), training (\d+:\d\d:\d\d)$")


def _progress_lines(tmp_path, capsys, monkeypatch, seconds, **overrides):
    monkeypatch.setenv(progress.SECONDS_ENV, seconds)
    train(profile_config("tiny", {**MICRO_SET, **overrides}), tmp_path, progress=True)  # pytest's stderr: no TTY
    return [PROGRESS.match(line).groups() for line in capsys.readouterr().out.splitlines() if " it " in line]


def test_without_a_terminal_a_line_every_log_every_iterations(tmp_path, capsys, monkeypatch):
    # 128 images in batches of 64: 2 iterations per epoch, 6 in all; iterations 0, 2 and 4 are logged
    lines = _progress_lines(tmp_path, capsys, monkeypatch, "3600", log_every=2)
    assert [(epoch, it) for epoch, it, _, _ in lines] == [("1", "1"), ("2", "1"), ("3", "1")]


def test_without_a_terminal_a_line_also_when_the_seconds_have_passed(tmp_path, capsys, monkeypatch):
    lines = _progress_lines(tmp_path, capsys, monkeypatch, "1e-9", log_every=1000)  # no iteration logged but 0
    assert [(epoch, it) for epoch, it, _, _ in lines] == [(e, i) for e in "123" for i in "12"]
    assert lines[-1][2:] == ("0:00:00", "0:00:00")  # the last iteration of the run leaves nothing


def test_a_terminal_gets_the_bar_and_a_recording_caller_nothing(monkeypatch):
    leader, follower = os.openpty()
    with open(os.ttyname(follower), "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        assert progress.mode(True, True) == progress.BAR
        assert progress.mode(False, True) == progress.mode(True, False) == progress.OFF
    os.close(leader)
    os.close(follower)


def test_a_resumed_run_says_so_once(tmp_path, capsys):
    config = micro_config(epochs=2)

    def stop_after_epoch_1(kind, step, metrics):
        if kind == "epoch" and step == 2:
            raise Interrupted
    with pytest.raises(Interrupted):
        train(config, tmp_path, stop_after_epoch_1, progress=False)
    assert "resumed" not in capsys.readouterr().out
    train(config, tmp_path, progress=False)
    assert [line for line in capsys.readouterr().out.splitlines() if "resumed" in line] == [
        "resumed from checkpoint at epoch 1"]


def test_a_bad_progress_interval_is_refused_before_the_folder_exists(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(progress.SECONDS_ENV, "soon")
    assert train_main(["--set", "data.train_subset=256", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and progress.SECONDS_ENV in err and not (tmp_path / "run").exists()
