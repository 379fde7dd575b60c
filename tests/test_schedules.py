"""Schedules hit their endpoints and follow the paper's shapes."""
import math

import pytest

from core.profiles import profile_config
from core.schedules import Schedules, cosine_schedule, teacher_temp_schedule


def test_cosine_with_warmup_hits_endpoints():
    values = cosine_schedule(1.0, 0.01, epochs=10, iters_per_epoch=5, warmup_epochs=2)
    assert len(values) == 50
    assert values[0] == 0.0
    assert values[10] == pytest.approx(1.0)  # warm-up ends at the base value
    assert values[-1] == pytest.approx(0.01)
    assert values[9] == pytest.approx(0.9)  # linear ramp
    mid = 10 + (40 - 1) / 2
    assert values[int(mid)] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * int(mid - 10) / 39)))


def test_momentum_goes_from_base_to_one():
    values = cosine_schedule(0.996, 1.0, epochs=3, iters_per_epoch=7)
    assert values[0] == pytest.approx(0.996) and values[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_teacher_temperature_warmup_and_constant():
    ramp = teacher_temp_schedule("0.04->0.07", warmup_epochs=30, epochs=100)
    assert ramp[0] == pytest.approx(0.04) and ramp[30] == pytest.approx(0.07) and ramp[-1] == 0.07
    assert ramp[15] == pytest.approx(0.055)
    assert teacher_temp_schedule(0.04, 30, 5) == [0.04] * 5
    assert teacher_temp_schedule(0, 30, 3) == [0.0] * 3
    assert teacher_temp_schedule("0.04->0.07", 30, 10)[-1] == pytest.approx(0.04 + 0.03 * 9 / 10)


def test_lr_is_scaled_by_global_batch():
    config = profile_config("tiny", {"batch_size": 512, "optim.lr": 0.0005, "optim.warmup_epochs": 1})
    schedules = Schedules(config, iters_per_epoch=4)
    assert max(schedules.lr) == pytest.approx(0.0005 * 512 / 256)
    assert schedules.weight_decay[0] == pytest.approx(0.04) and schedules.weight_decay[-1] == pytest.approx(0.4)


def test_no_sharpening_uses_student_temperature():
    config = profile_config("tiny", {"loss.sharpening": False})
    assert Schedules(config, 2).teacher_temp == [0.1] * config.epochs
