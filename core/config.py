"""Every hyperparameter of a DINO run, in one frozen, validated object.

The config is the unit that studies sweep, hash and record, so it is plain data: nested frozen
dataclasses of numbers, strings, booleans and pairs, built from a dict and turned back into one
(the machinery is ``core.typed``). Values are checked when the config is built, so a bad run is
refused before any work starts, with a message that names the key and the fix.

Where the reference code and the paper differ, the paper is the default (teacher temperature
warm-up 0.04->0.07 over 30 epochs); the reference's value is one setting away
(``loss.teacher_temp = 0.04``).

Warm-ups (``optim.warmup_epochs``, ``loss.teacher_temp_warmup_epochs``,
``head.freeze_last_layer``) are durations: a number of epochs (``10``, the paper's unit), or a
share of the run written ``"10%"``, which a shorter profile and ``--set epochs=N`` scale with the
run, so a warm-up is never cut short: every warm-up ends within the run, or the config is refused.
"""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Tuple

from core import typed
from core.early_stop import EarlyStopConfig, check as check_early_stop
from core.typed import ConfigError, parse_assignment, parse_value  # noqa: F401  (the config's CLI helpers)

TEACHER_UPDATES = ("momentum", "previous_epoch", "previous_iter", "student_copy")
PRECISIONS = ("fp32", "bf16", "fp16")
DATASETS = ("auto", "fashion_mnist", "imagefolder", "images")


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
    freeze_last_layer: Any = 1  # duration (epochs or "P%") during which the last layer gets no gradient

    def validate(self) -> None:
        _positive(self, "hidden_dim", "bottleneck_dim", "out_dim", "nlayers")
        parse_duration(self.freeze_last_layer, "head.freeze_last_layer")


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
    warm-up written ``"0.04->0.07"``, linear over ``teacher_temp_warmup_epochs`` (a duration) and
    reaching its end value at the warm-up's last epoch, as the reference's ``np.linspace`` does.
    ``sharpening = false`` gives the teacher the student's temperature (no sharpening relative to
    the student) and ``centering = false`` never subtracts a center: the two halves of the
    paper's collapse study (Fig. 7).
    """

    student_temp: float = 0.1
    teacher_temp: Any = "0.04->0.07"
    teacher_temp_warmup_epochs: Any = 30  # duration: epochs, or a share of the run ("30%")
    center_momentum: float = 0.9
    centering: bool = True
    sharpening: bool = True

    def validate(self) -> None:
        if self.student_temp <= 0:
            raise ConfigError(f"loss.student_temp={self.student_temp} must be > 0")
        start, end = parse_teacher_temp(self.teacher_temp)
        if start < 0 or end < 0:
            raise ConfigError(f"loss.teacher_temp={self.teacher_temp!r} must be >= 0")
        parse_duration(self.teacher_temp_warmup_epochs, "loss.teacher_temp_warmup_epochs")
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
    warmup_epochs: Any = 10  # duration: epochs, or a share of the run ("10%")
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0  # per-parameter gradient norm clip; 0 switches clipping off

    def validate(self) -> None:
        if self.lr <= 0 or self.min_lr < 0:
            raise ConfigError(f"optim.lr={self.lr} must be > 0 and optim.min_lr >= 0")
        parse_duration(self.warmup_epochs, "optim.warmup_epochs")
        if self.weight_decay < 0 or self.weight_decay_end < 0:
            raise ConfigError("optim.weight_decay and optim.weight_decay_end must be >= 0")
        if self.clip_grad < 0:
            raise ConfigError(f"optim.clip_grad={self.clip_grad} must be >= 0 (0 disables clipping)")


@dataclass(frozen=True)
class DataConfig:
    """Where images come from. ``path`` is an ImageFolder root with ``train/`` and ``val/``
    (``imagefolder``), the folder of Fashion-MNIST's IDX files (Debian's ``dataset-fashion-mnist``),
    or a folder of unlabelled image files, all of them under it (``images``); ``auto`` (what
    ``--data`` sets) recognises which from the folder's contents when the run starts
    (``core.preflight``). ``eval_path`` is a labelled ImageFolder root whose ``train/`` is the k-NN
    memory and ``val/`` the queries (also of the linear probe), in place of the training data's:
    the only labels an ``images`` run has, which trains without evaluation if it has none."""

    name: Literal["auto", "fashion_mnist", "imagefolder", "images"] = "imagefolder"
    path: str = ""
    eval_path: str = ""
    load_size: int = 256  # k-NN inputs (and Fashion-MNIST's training images): load_size squares
    eval_crop: float = 0.875  # k-NN inputs: central fraction of the loaded square, resized
    train_subset: int = 0  # 0 = the whole train split; N = a fixed random N images to pre-train on
    num_workers: int = 0

    def validate(self) -> None:
        if self.name not in DATASETS:
            raise ConfigError(f"data.name={self.name!r} is unknown; choose one of {', '.join(DATASETS)}")
        if self.name != "fashion_mnist" and not self.path:
            what = ("the ImageFolder root holding train/ and val/" if self.name == "imagefolder"
                    else "the data set's folder")
            raise ConfigError(f"data.path is empty: give {what} (e.g. --data /datasets/imagenet)")
        if not 0 < self.eval_crop <= 1:
            raise ConfigError(f"data.eval_crop={self.eval_crop} must be in (0, 1]")
        if self.train_subset < 0 or self.num_workers < 0:
            raise ConfigError("data.train_subset and data.num_workers must be >= 0")
        _positive(self, "load_size")


@dataclass(frozen=True)
class EvalConfig:
    """Weighted k-NN on the teacher's L2-normalised backbone features (CLS token), and a linear
    probe on the same features."""

    knn_k: int = 20
    knn_temperature: float = 0.07
    every_epochs: int = 0  # 0 = only at the end of training
    chunk_size: int = 1024  # test rows scored at once: bounds memory
    max_memory: int = 0  # 0 = the whole train split as memory bank; N = a fixed random N of it
    max_queries: int = 0  # 0 = the whole test split as queries; N = a fixed random N of it
    # a linear probe on the same frozen features (core.probe): about 3.5 CPU-seconds per backbone
    # on tiny's 20k x 128 features, under 3 % of a tiny run, so it is on by default
    linear_probe: bool = True

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
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
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
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be >= 0")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
        if self.crops.global_size != self.backbone.img_size:
            raise ConfigError(f"crops.global_size={self.crops.global_size} differs from "
                              f"backbone.img_size={self.backbone.img_size}; set them equal")
        for key in ("global_size", "local_size"):
            if getattr(self.crops, key) % self.backbone.patch_size:
                raise ConfigError(f"crops.{key}={getattr(self.crops, key)} is not a multiple of "
                                  f"backbone.patch_size={self.backbone.patch_size}")
        self._check_durations()

    def duration(self, key: str) -> float:
        """The duration at dotted ``key`` (e.g. ``"optim.warmup_epochs"``) in epochs of this run."""
        section, name = key.split(".")
        amount, is_share = parse_duration(getattr(getattr(self, section), name), key)
        return amount * self.epochs if is_share else amount

    def _check_durations(self) -> None:
        """Every warm-up ends within the run, so its end value is really reached."""
        fix = "shorten it, or give it as a share of the run (e.g. '30%') so that it scales with epochs"
        start, end = parse_teacher_temp(self.loss.teacher_temp)
        ramp = self.loss.sharpening and start != end
        for key in _WARMUPS:
            if key == "loss.teacher_temp_warmup_epochs" and not ramp:
                continue  # a constant temperature has no warm-up to reach the end of
            epochs = self.duration(key)
            if epochs > self.epochs:
                raise ConfigError(f"{key}={epochs:g} epochs exceeds epochs={self.epochs}; {fix}")
        if self.duration("head.freeze_last_layer") >= self.epochs:
            raise ConfigError(f"head.freeze_last_layer={self.head.freeze_last_layer} lasts the whole run "
                              f"(epochs={self.epochs}): the last layer would never train; lower it")
        check_early_stop(self)
        warmup = self.duration("loss.teacher_temp_warmup_epochs")
        if ramp and 0 < warmup <= 1 and self.epochs < 2:
            raise ConfigError(f"loss.teacher_temp={self.loss.teacher_temp!r} cannot warm up in a "
                              "1-epoch run (the schedule is per epoch); use a constant temperature")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DINOConfig":
        """Build from a nested dict (unknown keys and wrong types are refused)."""
        return typed.build(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready nested dict; ``from_dict(to_dict())`` gives the same config."""
        return typed.plain(self)

    def replace(self, overrides: Mapping[str, Any]) -> "DINOConfig":
        """A new config with dotted-key overrides applied, e.g. ``{"teacher.momentum": 0.99}``."""
        values = self.to_dict()
        for dotted, value in overrides.items():
            typed.set_dotted(values, dotted, value, field_names())
        return DINOConfig.from_dict(values)

    def flat(self) -> dict[str, Any]:
        """Dotted key -> value, for diffs between runs and for trackers."""
        return typed.dotted(self)


_SECTIONS = ("backbone", "head", "crops", "loss", "teacher", "optim", "data", "eval", "early_stop")
_WARMUPS = ("optim.warmup_epochs", "loss.teacher_temp_warmup_epochs")


def parse_duration(value: Any, key: str) -> tuple[float, bool]:
    """``10`` -> (10.0, False): epochs; ``"30%"`` -> (0.3, True): a share of the run."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = typed.parse_value(value.strip()[:-1])
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise ConfigError(f"{key}={value!r} is not a share of the run; write e.g. '10%'")
        share = number / 100
        if not 0 <= share <= 1:
            raise ConfigError(f"{key}={value!r} must be a share between 0% and 100% of the run")
        return share, True
    epochs = typed.finite_number(value, key)
    if epochs < 0:
        raise ConfigError(f"{key}={value!r} must be >= 0 epochs (or a share of the run, e.g. '10%')")
    return epochs, False


def parse_teacher_temp(value: Any) -> tuple[float, float]:
    """``0.04`` -> (0.04, 0.04); ``"0.04->0.07"`` -> (0.04, 0.07)."""
    key = "loss.teacher_temp"
    if isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be a number or 'start->end'")
    if isinstance(value, (int, float)):
        number = typed.finite_number(value, key)
        return number, number
    if isinstance(value, str):
        parts = value.split("->")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if not all(math.isfinite(n) for n in numbers):
            raise ConfigError(f"{key}={value!r} is not finite; write finite temperatures, e.g. '0.04->0.07'")
        if len(numbers) == 1:
            return numbers[0], numbers[0]
        if len(numbers) == 2:
            return numbers[0], numbers[1]
    raise ConfigError(f"{key}={value!r} is not a temperature; write 0.04 or '0.04->0.07'")


def field_names() -> list[str]:
    """Every dotted key a config accepts (for error messages and study validation)."""
    return typed.field_names(DINOConfig)


def unknown_key_message(key: str) -> str:
    """'unknown config key ...; did you mean ...?' with the closest valid dotted keys."""
    return typed.unknown_key_message(key, field_names())


def _positive(obj: Any, *keys: str) -> None:
    for key in keys:
        if getattr(obj, key) <= 0:
            raise ConfigError(f"{_section_name(obj)}{key}={getattr(obj, key)} must be > 0")


def _section_name(obj: Any) -> str:
    for section in _SECTIONS:
        if type(obj) is _SECTION_TYPES.get(section):
            return section + "."
    return ""


_SECTION_TYPES = {name: hint for name, hint in typing.get_type_hints(DINOConfig).items() if name in _SECTIONS}
