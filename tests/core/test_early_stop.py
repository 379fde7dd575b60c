"""Collapsed runs stop early and say so (core.early_stop): the stop rule on hand-made epoch
records, then real micro trainings on Fashion-MNIST that collapse to uniform (centering only) and
to one dimension (sharpening only), healthy ones that must not stop, and a stopped run resumed.

At 16 iterations per epoch (SLOW_EPOCHS) a micro run collapses within 2 or 3 epochs without
sharpening or without centering, while with both its KL stays above 0.06 nats and h(P_t) below
0.98 ln K for the 4 epochs trained here. The early stop is switched on explicitly, whatever
tests.helpers' micro configs choose for the other tests.
"""
import math

import pytest
import torch

from core.checkpoint import load_checkpoint
from core.collapse import CollapseRule, is_collapsed
from core.early_stop import EarlyStop, whole_epochs
from core.profiles import profile_config
from core.train import CHECKPOINT, train
from core.train import main as train_main
from tests.helpers import MICRO_SET, SLOW_EPOCHS, micro_config

LN64 = math.log(64)
UNIFORM = {"target_entropy": 0.99 * LN64, "kl": 0.01}
ONE_DIMENSION = {"target_entropy": 0.01, "kl": 0.001}
HEALTHY = {"target_entropy": 2.0, "kl": 0.5}


def slow(**overrides):
    """A micro run of 16 iterations per epoch with the early stop on (its defaults: 10 % grace, 20 %
    patience, which on 6 epochs are 0 and 2 epochs)."""
    return profile_config("tiny", {**MICRO_SET, **SLOW_EPOCHS, "early_stop.enabled": True,
                                   "early_stop.grace": "10%", "early_stop.patience": "20%", **overrides})


class Interrupted(Exception):
    pass


# -- the rule on hand-made records --------------------------------------------------------------------
def epochs(*metrics):
    """Epoch records 1, 2, ... with an iteration and a k-NN record between them, as a run keeps them."""
    records = []
    for step, m in enumerate(metrics, start=1):
        records += [("iteration", step * 2, {"loss": 1.0}), ("epoch", step, m), ("knn", step, {"top1": 50.0})]
    return records


def rule(**overrides):
    return EarlyStop(micro_config(epochs=10, **{"early_stop.enabled": True, "early_stop.grace": 2,
                                                "early_stop.patience": 3, **overrides}))


def test_the_rule_stops_after_patience_collapsed_epochs_past_the_grace():
    stop = rule()
    # collapsed from the first epoch: epochs 1 and 2 are the grace, 3, 4, 5 the patience
    assert [stop.verdict(epochs(*[UNIFORM] * n)) for n in range(1, 6)] == [None, None, None, None, "uniform"]
    # a healthy epoch starts the count again: 6, 7, 8 after the healthy 5th
    streak = [UNIFORM] * 4 + [HEALTHY] + [UNIFORM] * 3
    assert stop.verdict(epochs(*streak[:7])) is None and stop.verdict(epochs(*streak)) == "uniform"
    # any collapsed mode counts; the run stops for the mode of its last epoch
    assert stop.verdict(epochs(HEALTHY, HEALTHY, UNIFORM, UNIFORM, ONE_DIMENSION)) == "one dimension"
    # a streak that completes at the last epoch is no stop: the run ends there anyway
    assert stop.verdict(epochs(*[HEALTHY] * 7, *[UNIFORM] * 3)) is None
    assert rule(**{"early_stop.enabled": False}).verdict(epochs(*[UNIFORM] * 5)) is None


@pytest.mark.parametrize("epochs_, grace, patience, expected", [
    (6, "10%", "20%", (0, 2)), (10, "10%", "20%", (1, 2)), (14, "10%", "20%", (1, 3)),
    (100, "10%", "20%", (10, 20)), (3, "10%", "20%", (0, 1)), (10, 2.5, 1.5, (2, 2)), (10, 0, "1%", (0, 1))])
def test_grace_and_patience_in_whole_epochs(epochs_, grace, patience, expected):
    config = micro_config(epochs=epochs_, **{"early_stop.grace": grace, "early_stop.patience": patience,
                                             "loss.teacher_temp_warmup_epochs": 0})
    assert whole_epochs(config) == expected


@pytest.mark.parametrize("setting, named", [
    ("early_stop.patience=0", "early_stop.enabled = false"), ("early_stop.grace=13", "could never stop"),
    ("early_stop.grace=-1", "early_stop.grace"), ("early_stop.patience=abc", "early_stop.patience"),
    ("early_stop.enabled=maybe", "early_stop.enabled")])
def test_bad_settings_are_refused_before_the_folder_exists(tmp_path, capsys, setting, named):
    assert train_main(["--set", setting, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


# -- real micro trainings ---------------------------------------------------------------------------
def trained(config, out, callback=None):
    records = []

    def record(kind, step, metrics):
        records.append((kind, step, dict(metrics)))
        if callback:
            callback(kind, step, metrics)
    return train(config, out, record, progress=False), records


def kinds(records, kind):
    return [(step, m) for k, step, m in records if k == kind]


@pytest.mark.parametrize("variant, mode", [({"loss.sharpening": False}, "uniform"),
                                           ({"loss.centering": False}, "one dimension")])
def test_a_collapsing_run_stops_evaluates_and_records_the_stop(tmp_path, capsys, variant, mode):
    config = slow(epochs=6, **variant)
    result, records = trained(config, tmp_path / "run")
    stopped = result["stopped_epoch"]
    assert 2 <= stopped < 6 and result["collapse"] == mode and result["epochs"] == 6
    assert [step for step, _ in kinds(records, "epoch")] == list(range(1, stopped + 1))
    # the last `patience` (2) epochs were collapsed by the run's own rule, the epoch before them not
    verdicts = [CollapseRule().classify(m["target_entropy"], m["kl"], 64) for _, m in kinds(records, "epoch")]
    assert all(is_collapsed(v) for v in verdicts[-2:]) and (stopped == 2 or not is_collapsed(verdicts[-3]))
    # evaluated at the stop, as at a last epoch: the k-NN and the linear probe
    (knn_step, knn), = kinds(records, "knn")
    assert knn_step == stopped and result["knn_top1"] == knn["top1"] and "linear_top1" in result
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert state["epoch"] == stopped and state["final"]["stopped"] == {"epoch": stopped, "collapse": mode}
    assert f"stopped at epoch {stopped} of 6: collapsed ({mode})" in capsys.readouterr().out


@pytest.mark.parametrize("variant", [{}, {"teacher.update": "previous_epoch"}])
def test_healthy_runs_do_not_stop(tmp_path, variant):
    """4 epochs: the defaults' grace and patience are 0 and 1 epoch, the most eager they get."""
    result, records = trained(slow(epochs=4, **variant), tmp_path)
    assert "stopped_epoch" not in result and result["collapse"] == "none"
    assert [step for step, _ in kinds(records, "epoch")] == [1, 2, 3, 4]


def test_stop_and_resume_equal_no_stop_and_a_stopped_run_is_not_trained_again(tmp_path, capsys):
    config = slow(epochs=6, **{"loss.sharpening": False})
    straight, straight_records = trained(config, tmp_path / "straight")
    stopped = straight["stopped_epoch"]

    def before_the_stop(kind, step, metrics):
        if kind == "epoch" and step == stopped - 1:
            raise Interrupted

    def at_its_evaluation(kind, step, metrics):  # decided, evaluated, not yet checkpointed
        if kind == "knn":
            raise Interrupted
    for name, interrupt in (("early", before_the_stop), ("late", at_its_evaluation)):
        with pytest.raises(Interrupted):
            trained(config, tmp_path / name, interrupt)
        resumed, _ = trained(config, tmp_path / name)
        assert resumed["stopped_epoch"] == stopped, name
        for key in ("knn_top1", "knn_top5", "loss", "target_entropy", "kl", "collapse"):
            assert resumed[key] == straight[key], (name, key)
        a, b = (load_checkpoint(tmp_path / n / CHECKPOINT) for n in ("straight", name))
        assert all(torch.equal(a["teacher"][k], b["teacher"][k]) for k in a["teacher"]), name
    capsys.readouterr()
    again, replayed = trained(config, tmp_path / "straight")  # relaunched: nothing left to train
    assert again["stopped_epoch"] == stopped and again["knn_top1"] == straight["knn_top1"]
    assert replayed == [r for r in straight_records if r[0] != "iteration"]  # the records, replayed only
    out = capsys.readouterr().out
    assert out.count(f"resumed from checkpoint at epoch {stopped}") == 1
    assert f"stopped at epoch {stopped} of 6: collapsed (uniform)" in out


def test_one_key_trains_a_collapsing_run_to_the_end_and_the_stop_changes_nothing_before_it(tmp_path):
    stopped, stopped_records = trained(slow(epochs=6, **{"loss.sharpening": False}), tmp_path / "stopped")
    full, full_records = trained(slow(epochs=6, **{"loss.sharpening": False, "early_stop.enabled": False}),
                                 tmp_path / "full")
    assert "stopped_epoch" not in full and full["collapse"] == "uniform"
    assert [s for s, _ in kinds(full_records, "epoch")] == [1, 2, 3, 4, 5, 6]
    def trained_values(records):  # what the epochs computed, without their timings
        return [(step, {k: v for k, v in m.items() if k not in ("epoch_seconds", "images_per_second")})
                for step, m in kinds(records, "epoch")]
    assert trained_values(stopped_records) == trained_values(full_records)[:stopped["stopped_epoch"]]
