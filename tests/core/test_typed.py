"""A config as plain data (``core.typed.plain`` and ``dotted``, behind ``DINOConfig.to_dict`` and
``flat``) is exactly what JSON makes of ``dataclasses.asdict``, key order and number types included."""
from __future__ import annotations

import dataclasses
import json

import pytest

from core import typed
from core.config import DINOConfig
from core.profiles import PROFILES, profile_config


def _configs() -> list[DINOConfig]:
    changed = {"crops.global_scale": [0.3, 0.9], "loss.teacher_temp": "0.04->0.06", "optim.warmup_epochs": "10%",
               "loss.center_momentum": 0, "data.path": "/data"}
    shipped = [profile_config(name, {"data.path": "/data"}) for name in PROFILES]
    return [DINOConfig.from_dict({"data": {"path": "/data"}}), *shipped, profile_config("tiny", changed)]


@pytest.mark.parametrize("config", _configs())
def test_plain_data_is_a_json_round_trip_of_asdict(config):
    expected = json.loads(json.dumps(dataclasses.asdict(config)))
    assert json.dumps(config.to_dict()) == json.dumps(expected)  # same keys, order, values and types
    assert json.dumps(config.flat()) == json.dumps(typed.flatten(expected))
    assert DINOConfig.from_dict(config.to_dict()) == config


def test_a_changed_pair_reads_as_a_list_and_a_share_as_written():
    config = profile_config("tiny", {"crops.global_scale": [0.3, 0.9], "optim.warmup_epochs": "10%"})
    assert config.crops.global_scale == (0.3, 0.9)  # a tuple in the config
    assert config.to_dict()["crops"]["global_scale"] == [0.3, 0.9]
    assert config.flat()["crops.global_scale"] == [0.3, 0.9] and config.flat()["optim.warmup_epochs"] == "10%"
    assert list(config.flat())[:2] == ["backbone.name", "backbone.patch_size"]  # the fields' order


def test_field_type_follows_dotted_keys():
    assert typed.field_type(DINOConfig, "epochs") is int
    assert typed.field_type(DINOConfig, "loss.center_momentum") is float
    assert typed.field_type(DINOConfig, "backbone.name") is str
