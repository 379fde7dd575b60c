"""Bad configs are refused when built, with a message that names the key and the fix."""
import pytest

from core.config import ConfigError, DINOConfig, parse_value
from core.profiles import PROFILES, profile_config


@pytest.mark.parametrize("overrides, words", [
    ({"teacher.momentun": 0.99}, ["teacher.momentun", "did you mean teacher.momentum"]),
    ({"loss.center_momentum": 1.0}, ["loss.center_momentum", "loss.centering = false"]),
    ({"loss.center_momentum": -0.1}, ["loss.center_momentum"]),
    ({"teacher.update": "ema"}, ["teacher.update", "previous_epoch"]),
    ({"epochs": "ten"}, ["epochs", "expected int"]),
    ({"epochs": 0}, ["epochs", "> 0"]),
    ({"loss.teacher_temp": "hot"}, ["loss.teacher_temp", "0.04->0.07"]),
    ({"loss.teacher_temp": -0.1}, ["loss.teacher_temp", ">= 0"]),
    ({"crops.n_global": 3}, ["crops.n_global", "exactly 2"]),
    ({"crops.local_size": 18}, ["crops.local_size", "patch_size"]),
    ({"crops.global_scale": [0.8, 0.4]}, ["crops.global_scale", "increasing"]),
    ({"backbone.num_heads": 3}, ["backbone.embed_dim", "num_heads"]),
    ({"backbone.name": "resnet50"}, ["backbone.name", "Vision Transformer"]),
    ({"precision": "fp8"}, ["precision", "bf16"]),
    ({"optim.warmup_epochs": 50}, ["optim.warmup_epochs", "epochs"]),
    ({"head.freeze_last_layer": 50}, ["head.freeze_last_layer", "never train"]),
    ({"data.name": "cifar"}, ["data.name", "fashion_mnist"]),
    ({"crops": 3}, ["crops"]),
])
def test_bad_values_are_refused_with_key_and_fix(overrides, words):
    with pytest.raises(ConfigError) as error:
        profile_config("tiny", overrides)
    for word in words:
        assert word in str(error.value)


def test_imagefolder_needs_a_path():
    with pytest.raises(ConfigError, match="data.path"):
        profile_config("vits16_imagenet", {"data.path": ""})


def test_unknown_profile():
    with pytest.raises(ConfigError, match="tiny"):
        profile_config("huge")


def test_round_trip_and_overrides():
    config = profile_config("tiny", {"teacher.momentum": 0.99, "loss.center_momentum": 0})
    assert DINOConfig.from_dict(config.to_dict()) == config
    assert config.loss.center_momentum == 0.0 and isinstance(config.loss.center_momentum, float)
    assert config.flat()["teacher.momentum"] == 0.99
    with pytest.raises(Exception):
        config.epochs = 3  # frozen


def test_every_profile_is_valid_and_imagenet_is_the_papers_recipe():
    for name in PROFILES:
        profile_config(name)
    paper = profile_config("vits16_imagenet")
    assert (paper.backbone.patch_size, paper.backbone.embed_dim, paper.backbone.depth) == (16, 384, 12)
    assert (paper.crops.n_local, paper.crops.global_size, paper.crops.local_size) == (8, 224, 96)
    assert (paper.batch_size, paper.epochs, paper.head.out_dim) == (1024, 100, 65536)
    assert paper.loss.teacher_temp == "0.04->0.07" and paper.loss.teacher_temp_warmup_epochs == 30
    assert paper.teacher.momentum == 0.996 and paper.loss.center_momentum == 0.9
    assert paper.precision in ("fp16", "bf16")


def test_parse_value():
    assert parse_value("20") == 20 and parse_value("0.99") == 0.99
    assert parse_value("true") is True and parse_value("[0.4, 1.0]") == [0.4, 1.0]
    assert parse_value("0.04->0.07") == "0.04->0.07" and parse_value("momentum") == "momentum"
