"""Per-iteration schedules (learning rate, weight decay, teacher momentum) and the per-epoch
teacher temperature, as arrays indexed by global iteration or epoch.

Precomputing whole schedules keeps resume exact: a resumed run looks up the same values by index.
"""
from __future__ import annotations

import math

from core.config import DINOConfig, parse_teacher_temp


def cosine_schedule(base: float, final: float, epochs: int, iters_per_epoch: int,
                    warmup_epochs: int = 0, warmup_start: float = 0.0) -> list[float]:
    """Linear warm-up from ``warmup_start`` to ``base`` over ``warmup_epochs``, then a half cosine
    from ``base`` to ``final``, one value per iteration. The last value is exactly ``final``."""
    warmup = warmup_epochs * iters_per_epoch
    total = epochs * iters_per_epoch
    values = [warmup_start + (base - warmup_start) * i / warmup for i in range(warmup)]
    decay = total - warmup
    for i in range(decay):
        progress = i / (decay - 1) if decay > 1 else 1.0
        values.append(final + 0.5 * (base - final) * (1 + math.cos(math.pi * progress)))
    return values


def teacher_temp_schedule(value: float | str, warmup_epochs: int, epochs: int) -> list[float]:
    """Per epoch: linear from start to end over ``warmup_epochs`` (the paper's 0.04->0.07 over 30),
    then constant at end. A constant temperature gives a flat schedule."""
    start, end = parse_teacher_temp(value)
    warmup = min(warmup_epochs, epochs) if start != end else 0
    ramp = [start + (end - start) * e / warmup for e in range(warmup)]
    return ramp + [end] * (epochs - warmup)


class Schedules:
    """Every schedule of one run, for a given number of iterations per epoch."""

    def __init__(self, config: DINOConfig, iters_per_epoch: int):
        optim, epochs = config.optim, config.epochs
        lr = optim.lr * config.batch_size / 256.0
        self.lr = cosine_schedule(lr, optim.min_lr, epochs, iters_per_epoch, optim.warmup_epochs)
        self.weight_decay = cosine_schedule(optim.weight_decay, optim.weight_decay_end, epochs,
                                            iters_per_epoch)
        self.momentum = cosine_schedule(config.teacher.momentum, config.teacher.momentum_end,
                                        epochs, iters_per_epoch)
        if config.loss.sharpening:
            self.teacher_temp = teacher_temp_schedule(config.loss.teacher_temp,
                                                      config.loss.teacher_temp_warmup_epochs, epochs)
        else:  # no sharpening: the teacher is exactly as soft as the student
            self.teacher_temp = [config.loss.student_temp] * epochs
