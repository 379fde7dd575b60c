"""Every hyperparameter of a DINO run, in one frozen, validated object.

The config is the unit that studies sweep, hash and record, so it is plain data: nested frozen
dataclasses of numbers, strings, booleans and pairs, built from a dict and turned back into one.
Values are checked when the config is built, so a bad run is refused before any work starts,
with a message that names the key and the fix.

Where the reference code and the paper differ, the paper is the default (teacher temperature
warm-up 0.04->0.07 over 30 epochs); the reference's value is one setting away
(``loss.teacher_temp = 0.04``).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Tuple

TEACHER_UPDATES = ("momentum", "previous_epoch", "previous_iter", "student_copy")
PRECISIONS = ("fp32", "bf16", "fp16")
DATASETS = ("fashion_mnist", "imagefolder")


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and how to fix it."""


@dataclass(frozen=True)
class BackboneConfig:
    """A timm Vision Transformer, created by name with these shape overrides."""

    name: str = "vit_small_patch16_224"
    patch_size: int = 16
    img_size: int = 224
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    drop_path_rate: float = 0.1  # student only; the teacher never drops paths

    def validate(self) -> None:
        _positive(self, "patch_size", "img_size", "embed_dim", "depth", "num_heads")
        if not self.name.startswith(("vit_", "deit_", "eva", "samvit")) and "vit" not in self.name:
            raise ConfigError(f"backbone.name={self.name!r} is not a timm Vision Transformer; "
                              "use a name such as 'vit_small_patch16_224' (timm.list_models('vit_*'))")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"backbone.embed_dim={self.embed_dim} is not divisible by "
                              f"backbone.num_heads={self.num_heads}; pick heads that divide the width")
        if self.img_size % self.patch_size:
            raise ConfigError(f"backbone.img_size={self.img_size} is not a multiple of "
                              f"backbone.patch_size={self.patch_size}; choose sizes that tile")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"backbone.drop_path_rate={self.drop_path_rate} must be in [0, 1)")


@dataclass(frozen=True)
class HeadConfig:
    """The projection head: MLP in -> hidden -> ... -> bottleneck, L2-norm, weight-normed linear to K."""

    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    out_dim: int = 65536  # K
    nlayers: int = 3
    use_bn: bool = False
    norm_last_layer: bool = True
    freeze_last_layer: int = 1  # epochs during which the last layer gets no gradient

    def validate(self) -> None:
        _positive(self, "hidden_dim", "bottleneck_dim", "out_dim", "nlayers")
        if self.freeze_last_layer < 0:
            raise ConfigError(f"head.freeze_last_layer={self.freeze_last_layer} must be >= 0 epochs")


@dataclass(frozen=True)
class CropsConfig:
    """Multi-crop: two global views for teacher and student, local views for the student only."""

    n_global: int = 2
    n_local: int = 8
    global_size: int = 224
    local_size: int = 96
    global_scale: Tuple[float, float] = (0.4, 1.0)
    local_scale: Tuple[float, float] = (0.05, 0.4)
    blur_sigma: Tuple[float, float] = (0.1, 2.0)  # pixels, at the crop's resolution
    color_jitter: Tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)

    def validate(self) -> None:
        if self.n_global != 2:
            raise ConfigError(f"crops.n_global={self.n_global}: DINO's loss pairs exactly 2 global "
                              "views (the teacher's inputs); set crops.n_global = 2")
        if self.n_local < 0:
            raise ConfigError(f"crops.n_local={self.n_local} must be >= 0")
        _positive(self, "global_size", "local_size")
        for key in ("global_scale", "local_scale", "blur_sigma"):
            low, high = getattr(self, key)
            if not 0 < low <= high or (key != "blur_sigma" and high > 1):
                raise ConfigError(f"crops.{key}={(low, high)} must be an increasing pair "
                                  + ("of positive sigmas" if key == "blur_sigma" else "in (0, 1]"))


@dataclass(frozen=True)
class LossConfig:
    """Centering and sharpening of the teacher, sharpening temperature of the student.

    ``teacher_temp`` is a constant (``0.04``; ``0`` means one-hot argmax targets) or a linear
    warm-up written ``"0.04->0.07"``, reached after ``teacher_temp_warmup_epochs`` epochs.
    ``sharpening = false`` gives the teacher the student's temperature (no sharpening relative to
    the student) and ``centering = false`` never subtracts a center: the two halves of the
    paper's collapse study (Fig. 7).
    """

    student_temp: float = 0.1
    teacher_temp: Any = "0.04->0.07"
    teacher_temp_warmup_epochs: int = 30
    center_momentum: float = 0.9
    centering: bool = True
    sharpening: bool = True

    def validate(self) -> None:
        if self.student_temp <= 0:
            raise ConfigError(f"loss.student_temp={self.student_temp} must be > 0")
        start, end = parse_teacher_temp(self.teacher_temp)
        if start < 0 or end < 0:
            raise ConfigError(f"loss.teacher_temp={self.teacher_temp!r} must be >= 0")
        if self.teacher_temp_warmup_epochs < 0:
            raise ConfigError("loss.teacher_temp_warmup_epochs must be >= 0")
        if not 0.0 <= self.center_momentum < 1.0:
            raise ConfigError(f"loss.center_momentum={self.center_momentum} must be in [0, 1): "
                              "1 would freeze the center at 0; use loss.centering = false instead")


@dataclass(frozen=True)
class TeacherConfig:
    """How the teacher's weights follow the student's (the paper's Fig. 6)."""

    update: Literal["momentum", "previous_epoch", "previous_iter", "student_copy"] = "momentum"
    momentum: float = 0.996  # base EMA momentum, cosine-scheduled to momentum_end
    momentum_end: float = 1.0

    def validate(self) -> None:
        if self.update not in TEACHER_UPDATES:
            raise ConfigError(f"teacher.update={self.update!r} is unknown; choose one of "
                              + ", ".join(TEACHER_UPDATES))
        for key in ("momentum", "momentum_end"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"teacher.{key}={getattr(self, key)} must be in [0, 1]")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with the paper's schedules; ``lr`` is per 256 images and scaled by the global batch."""

    lr: float = 0.0005
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0  # per-parameter gradient norm clip; 0 switches clipping off

    def validate(self) -> None:
        if self.lr <= 0 or self.min_lr < 0:
            raise ConfigError(f"optim.lr={self.lr} must be > 0 and optim.min_lr >= 0")
        if self.warmup_epochs < 0 or self.weight_decay < 0 or self.weight_decay_end < 0:
            raise ConfigError("optim.warmup_epochs, weight_decay and weight_decay_end must be >= 0")
        if self.clip_grad < 0:
            raise ConfigError(f"optim.clip_grad={self.clip_grad} must be >= 0 (0 disables clipping)")


@dataclass(frozen=True)
class DataConfig:
    """Where images come from. ``path`` is an ImageFolder root with ``train/`` and ``val/``, or the
    folder of Fashion-MNIST's IDX files (Debian's ``dataset-fashion-mnist``)."""

    name: Literal["fashion_mnist", "imagefolder"] = "imagefolder"
    path: str = ""
    load_size: int = 256  # images are loaded as load_size x load_size squares before cropping
    eval_crop: float = 0.875  # k-NN inputs: central fraction of the loaded square, resized
    train_subset: int = 0  # 0 = the whole train split; N = a fixed random N images to pre-train on
    num_workers: int = 0

    def validate(self) -> None:
        if self.name not in DATASETS:
            raise ConfigError(f"data.name={self.name!r} is unknown; choose one of {', '.join(DATASETS)}")
        if self.name == "imagefolder" and not self.path:
            raise ConfigError("data.path is empty: give the ImageFolder root holding train/ and val/ "
                              "(e.g. --data /datasets/imagenet)")
        if not 0 < self.eval_crop <= 1:
            raise ConfigError(f"data.eval_crop={self.eval_crop} must be in (0, 1]")
        if self.train_subset < 0 or self.num_workers < 0:
            raise ConfigError("data.train_subset and data.num_workers must be >= 0")
        _positive(self, "load_size")


@dataclass(frozen=True)
class EvalConfig:
    """Weighted k-NN on the teacher's L2-normalised backbone features (CLS token)."""

    knn_k: int = 20
    knn_temperature: float = 0.07
    every_epochs: int = 0  # 0 = only at the end of training
    chunk_size: int = 1024  # test rows scored at once: bounds memory
    max_memory: int = 0  # 0 = the whole train split as memory bank; N = a fixed random N of it
    max_queries: int = 0  # 0 = the whole test split as queries; N = a fixed random N of it

    def validate(self) -> None:
        _positive(self, "knn_k", "chunk_size")
        if self.max_memory < 0 or self.max_queries < 0:
            raise ConfigError("eval.max_memory and eval.max_queries must be >= 0 (0 = the whole split)")
        if self.knn_temperature <= 0:
            raise ConfigError(f"eval.knn_temperature={self.knn_temperature} must be > 0")
        if self.every_epochs < 0:
            raise ConfigError("eval.every_epochs must be >= 0 (0 = only at the end)")


@dataclass(frozen=True)
class DINOConfig:
    """A complete DINO run. Build with ``DINOConfig.from_dict`` or ``replace`` to get validation."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    crops: CropsConfig = field(default_factory=CropsConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    epochs: int = 100
    batch_size: int = 1024  # global, over all processes
    seed: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # torch.compile student and teacher (inductor); a speed setting: the math is the same up to
    # floating-point rounding. The first iterations pay the compile time (a minute or more).
    compile: bool = False
    log_every: int = 10  # iterations between dense metric records (entropy/KL curves)

    def __post_init__(self) -> None:
        for section in _SECTIONS:
            getattr(self, section).validate()
        _positive(self, "epochs", "batch_size", "log_every")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
        if self.crops.global_size != self.backbone.img_size:
            raise ConfigError(f"crops.global_size={self.crops.global_size} differs from "
                              f"backbone.img_size={self.backbone.img_size}; set them equal")
        for key in ("global_size", "local_size"):
            if getattr(self.crops, key) % self.backbone.patch_size:
                raise ConfigError(f"crops.{key}={getattr(self.crops, key)} is not a multiple of "
                                  f"backbone.patch_size={self.backbone.patch_size}")
        if self.optim.warmup_epochs > self.epochs:
            raise ConfigError(f"optim.warmup_epochs={self.optim.warmup_epochs} exceeds "
                              f"epochs={self.epochs}; shorten the warm-up")
        if self.head.freeze_last_layer >= self.epochs:
            raise ConfigError(f"head.freeze_last_layer={self.head.freeze_last_layer} >= "
                              f"epochs={self.epochs}: the last layer would never train")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DINOConfig":
        """Build from a nested dict (unknown keys and wrong types are refused)."""
        return _build(cls, values, prefix="")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready nested dict; ``from_dict(to_dict())`` gives the same config."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, overrides: Mapping[str, Any]) -> "DINOConfig":
        """A new config with dotted-key overrides applied, e.g. ``{"teacher.momentum": 0.99}``."""
        values = self.to_dict()
        for dotted, value in overrides.items():
            _set_dotted(values, dotted, value)
        return DINOConfig.from_dict(values)

    def flat(self) -> dict[str, Any]:
        """Dotted key -> value, for diffs between runs and for trackers."""
        return _flatten(self.to_dict())


_SECTIONS = ("backbone", "head", "crops", "loss", "teacher", "optim", "data", "eval")


def parse_teacher_temp(value: Any) -> tuple[float, float]:
    """``0.04`` -> (0.04, 0.04); ``"0.04->0.07"`` -> (0.04, 0.07)."""
    if isinstance(value, bool):
        raise ConfigError(f"loss.teacher_temp={value!r} must be a number or 'start->end'")
    if isinstance(value, (int, float)):
        return float(value), float(value)
    if isinstance(value, str):
        parts = value.split("->")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) == 1:
            return numbers[0], numbers[0]
        if len(numbers) == 2:
            return numbers[0], numbers[1]
    raise ConfigError(f"loss.teacher_temp={value!r} is not a temperature; write 0.04 or '0.04->0.07'")


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"key=value"`` of a ``--set`` option -> ``(key, value)``."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"--set {text!r} needs the form key=value, e.g. --set epochs=20")
    return key.strip(), parse_value(value)


def parse_value(text: str) -> Any:
    """Read a ``--set key=value`` value: JSON where it parses (numbers, booleans, lists), else text."""
    lowered = text.strip()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        return lowered


def field_names() -> list[str]:
    """Every dotted key a config accepts (for error messages and study validation)."""
    return sorted(_flatten(_default_dict()))


def unknown_key_message(key: str) -> str:
    """'unknown config key ...; did you mean ...?' with the closest valid dotted keys."""
    names = field_names()
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else "valid keys: " + ", ".join(names)
    return f"unknown config key {key!r}; {hint}"


def _default_dict() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(DINOConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        values[f.name] = dataclasses.asdict(default) if dataclasses.is_dataclass(default) else default
    return values


def _positive(obj: Any, *keys: str) -> None:
    for key in keys:
        if getattr(obj, key) <= 0:
            raise ConfigError(f"{_section_name(obj)}{key}={getattr(obj, key)} must be > 0")


def _section_name(obj: Any) -> str:
    for section in _SECTIONS:
        if type(obj) is _SECTION_TYPES.get(section):
            return section + "."
    return ""


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a table of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(unknown_key_message(prefix + unknown[0]))
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, prefix + name + ".")
        else:
            kwargs[name] = _coerce(value, hint, prefix + name)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a field's annotation; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of "
                              + ", ".join(repr(a) for a in typing.get_args(hint)))
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], key)
    if origin in (tuple, Tuple):
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}={value!r} must be a list of {len(args)} numbers")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{key}={value!r} must be a finite number")
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r} has the wrong type: expected {hint.__name__}, "
                          f"got {type(value).__name__}")
    return value


def _set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = values
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ConfigError(unknown_key_message(dotted))
        node = node[part]
    if parts[-1] not in node or isinstance(node[parts[-1]], dict):
        raise ConfigError(unknown_key_message(dotted))
    node[parts[-1]] = list(value) if isinstance(value, tuple) else value


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix + key + "."))
        else:
            flat[prefix + key] = value
    return flat


_SECTION_TYPES = {name: typing.get_type_hints(DINOConfig)[name] for name in _SECTIONS}
