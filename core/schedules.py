"""Per-iteration schedules (learning rate, weight decay, teacher momentum, last-layer freeze) and
the per-epoch teacher temperature, as arrays indexed by global iteration or epoch.

Precomputing whole schedules keeps resume exact: a resumed run looks up the same values by index.
Warm-up lengths come from ``DINOConfig.duration`` (epochs, or a share of the run), so a profile
that shortens the run shortens its warm-ups with it and every warm-up reaches its end value.
"""
from __future__ import annotations

import math

from core.config import DINOConfig, parse_teacher_temp


def cosine_schedule(base: float, final: float, epochs: int, iters_per_epoch: int,
                    warmup_epochs: float = 0, warmup_start: float = 0.0) -> list[float]:
    """Linear warm-up from ``warmup_start`` to ``base`` over ``warmup_epochs`` (rounded to whole
    iterations, leaving at least one for the decay), then a half cosine from ``base`` to ``final``,
    one value per iteration. The last value is exactly ``final``."""
    total = epochs * iters_per_epoch
    warmup = min(round(warmup_epochs * iters_per_epoch), total - 1)
    values = [warmup_start + (base - warmup_start) * i / warmup for i in range(warmup)]
    decay = total - warmup
    for i in range(decay):
        progress = i / (decay - 1) if decay > 1 else 1.0
        values.append(final + 0.5 * (base - final) * (1 + math.cos(math.pi * progress)))
    return values


def teacher_temp_schedule(value: float | str, warmup_epochs: float, epochs: int) -> list[float]:
    """Per epoch: linear from start to end over ``warmup_epochs`` epochs, then constant at end.

    Over a whole number W of epochs this is the reference's ``np.linspace(start, end, W)``: epoch
    W - 1 is the first at the end value (the paper's 0.04->0.07 over 30 epochs reaches 0.07 at
    epoch 29). A fractional W (a share of a short run) continues the same line, epoch e at
    ``min(1, e / (W - 1))`` of the way; W <= 1 holds the start for epoch 0 only.
    """
    start, end = parse_teacher_temp(value)
    if start == end or warmup_epochs <= 0:
        return [end] * epochs
    span = warmup_epochs - 1

    def at(epoch: int) -> float:
        if span <= 0:
            return start if epoch == 0 else end
        return start + (end - start) * min(1.0, epoch / span)

    return [at(e) for e in range(epochs)]


class Schedules:
    """Every schedule of one run, for a given number of iterations per epoch."""

    def __init__(self, config: DINOConfig, iters_per_epoch: int):
        optim, epochs = config.optim, config.epochs
        lr = optim.lr * config.batch_size / 256.0
        self.lr = cosine_schedule(lr, optim.min_lr, epochs, iters_per_epoch,
                                  config.duration("optim.warmup_epochs"))
        self.weight_decay = cosine_schedule(optim.weight_decay, optim.weight_decay_end, epochs,
                                            iters_per_epoch)
        self.momentum = cosine_schedule(config.teacher.momentum, config.teacher.momentum_end,
                                        epochs, iters_per_epoch)
        # the last layer gets no gradient for these first iterations (the paper: 1 epoch of 100)
        self.freeze_last_layer_iters = round(config.duration("head.freeze_last_layer") * iters_per_epoch)
        if config.loss.sharpening:
            self.teacher_temp = teacher_temp_schedule(config.loss.teacher_temp,
                                                      config.duration("loss.teacher_temp_warmup_epochs"),
                                                      epochs)
        else:  # no sharpening: the teacher is exactly as soft as the student
            self.teacher_temp = [config.loss.student_temp] * epochs
