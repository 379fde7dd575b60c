"""Schedules hit their endpoints and follow the paper's shapes."""

import pytest

from core.config import ConfigError
from core.profiles import profile_config
from core.schedules import Schedules, cosine_schedule, teacher_temp_schedule


def test_cosine_with_warmup_hits_endpoints():
    values = cosine_schedule(1.0, 0.01, epochs=10, iters_per_epoch=5, warmup_epochs=2)
    assert len(values) == 50
    assert values[0] == 0.0
    assert values[10] == pytest.approx(1.0)  # warm-up ends at the base value
    assert values[-1] == pytest.approx(0.01)
    assert values[9] == pytest.approx(0.9)  # linear ramp
    # the cosine half-wave is point-symmetric about its middle: steps i and 39 - i after the
    # warm-up sum to base + final, and the two middle steps straddle their mean 0.505
    assert [values[10 + i] + values[49 - i] for i in range(20)] == pytest.approx([1.01] * 20)
    assert values[29] > 0.505 > values[30]


def test_momentum_goes_from_base_to_one():
    values = cosine_schedule(0.996, 1.0, epochs=3, iters_per_epoch=7)
    assert values[0] == pytest.approx(0.996) and values[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_teacher_temperature_warmup_is_the_papers_linspace():
    # the paper: 0.04 -> 0.07 linearly over 30 epochs, then 0.07 (the reference's np.linspace,
    # whose 30 points include both ends: epoch 29 is the first at 0.07)
    ramp = teacher_temp_schedule("0.04->0.07", warmup_epochs=30, epochs=100)
    assert ramp[0] == pytest.approx(0.04) and ramp[29] == pytest.approx(0.07) and ramp[-1] == 0.07
    assert ramp[15] == pytest.approx(0.0555172)  # 0.04 + 0.03 x 15 / 29 by hand
    assert sum(ramp) / 100 == pytest.approx(0.0655)  # (30 x 0.055 + 70 x 0.07) / 100
    assert teacher_temp_schedule(0.04, 30, 5) == [0.04] * 5
    assert teacher_temp_schedule(0, 30, 3) == [0.0] * 3


def test_a_share_of_a_short_run_continues_the_same_line():
    # 30 % of 14 epochs = 4.2 epochs: epoch e at min(1, e / 3.2) of the way, so the 14-epoch run's
    # mean temperature is the paper's (0.0655), not the 0.054 of a ramp cut off at epoch 14
    ramp = teacher_temp_schedule("0.04->0.07", warmup_epochs=4.2, epochs=14)
    assert ramp[:5] == pytest.approx([0.04, 0.049375, 0.05875, 0.068125, 0.07])
    assert ramp[4:] == [0.07] * 10
    assert sum(ramp) / 14 == pytest.approx(0.06545, abs=1e-5)


@pytest.mark.parametrize("profile", ["tiny", "vits16_imagenet"])
@pytest.mark.parametrize("epochs", [2, 3, 5, 14, 37, 100, 300, 800])
def test_every_warmup_ends_within_the_run_or_is_refused(profile, epochs):
    overrides = {"epochs": epochs, "loss.teacher_temp": "0.04->0.07", "data.path": "/data"}
    try:
        config = profile_config(profile, overrides)
    except ConfigError as error:  # the paper's 30 / 10 epochs do not fit in a shorter run
        assert profile == "vits16_imagenet" and epochs < 30 and "share of the run" in str(error)
        return
    iters = 7
    schedules = Schedules(config, iters_per_epoch=iters)
    assert schedules.teacher_temp[-1] == pytest.approx(0.07)
    assert max(schedules.teacher_temp) == pytest.approx(0.07)
    lr_peak = config.optim.lr * config.batch_size / 256
    assert max(schedules.lr) == pytest.approx(lr_peak)  # the lr warm-up reaches its base value
    assert schedules.freeze_last_layer_iters < epochs * iters


def test_warmups_as_shares_scale_with_the_run():
    config = profile_config("tiny", {"epochs": 20, "optim.warmup_epochs": "10%",
                                     "loss.teacher_temp": "0.04->0.07",
                                     "loss.teacher_temp_warmup_epochs": "30%", "head.freeze_last_layer": "1%"})
    schedules = Schedules(config, iters_per_epoch=50)
    assert schedules.lr[100] == pytest.approx(max(schedules.lr))  # 10 % of 20 epochs x 50 = 100 iterations
    assert schedules.lr[99] < schedules.lr[100]
    assert schedules.teacher_temp[5] == pytest.approx(0.07) and schedules.teacher_temp[4] < 0.07  # W = 6
    assert schedules.freeze_last_layer_iters == 10  # 1 % of 1000 iterations


@pytest.mark.parametrize("overrides, words", [
    ({"epochs": 20}, ["loss.teacher_temp_warmup_epochs=30", "epochs=20", "'30%'"]),
    ({"optim.warmup_epochs": "150%"}, ["optim.warmup_epochs", "between 0% and 100%"]),
    ({"optim.warmup_epochs": "ten%"}, ["optim.warmup_epochs", "share of the run"]),
    ({"optim.warmup_epochs": -1}, ["optim.warmup_epochs", ">= 0"]),
    ({"head.freeze_last_layer": "100%"}, ["head.freeze_last_layer", "never train"]),
    ({"epochs": 1, "optim.warmup_epochs": 0, "head.freeze_last_layer": 0,
      "loss.teacher_temp_warmup_epochs": "30%"}, ["loss.teacher_temp", "1-epoch run"]),
])
def test_warmups_longer_than_the_run_are_refused(overrides, words):
    with pytest.raises(ConfigError) as error:
        profile_config("vits16_imagenet", {"data.path": "/data", **overrides})
    for word in words:
        assert word in str(error.value)


def test_a_constant_temperature_needs_no_warmup_that_fits():
    config = profile_config("vits16_imagenet", {"data.path": "/data", "epochs": 20, "optim.warmup_epochs": 2,
                                                "loss.teacher_temp": 0.04})
    assert Schedules(config, 3).teacher_temp == [0.04] * 20


def test_lr_is_scaled_by_global_batch():
    config = profile_config("tiny", {"batch_size": 512, "optim.lr": 0.0005, "optim.warmup_epochs": 1})
    schedules = Schedules(config, iters_per_epoch=4)
    assert max(schedules.lr) == pytest.approx(0.0005 * 512 / 256)
    assert schedules.weight_decay[0] == pytest.approx(0.04) and schedules.weight_decay[-1] == pytest.approx(0.4)


def test_no_sharpening_uses_student_temperature():
    config = profile_config("tiny", {"loss.sharpening": False})
    assert Schedules(config, 2).teacher_temp == [0.1] * config.epochs
