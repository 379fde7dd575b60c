"""How the teacher follows the student: the four strategies of the paper's Fig. 6.

The teacher never receives gradients; each strategy only decides *when* it copies or averages
the student's weights, relative to the optimizer step and the epoch boundary.
"""
from __future__ import annotations

import torch
from torch import nn


class TeacherUpdate:
    """Hooks the trainer calls at the three moments a strategy can act. Subclasses override one."""

    def on_epoch_start(self, teacher: nn.Module, student: nn.Module) -> None:
        pass

    def before_step(self, teacher: nn.Module, student: nn.Module) -> None:
        pass

    def after_step(self, teacher: nn.Module, student: nn.Module, momentum: float) -> None:
        pass


class MomentumTeacher(TeacherUpdate):
    """EMA after every optimizer step: theta_t <- lambda theta_t + (1 - lambda) theta_s."""

    def after_step(self, teacher, student, momentum):
        ema_(teacher, student, momentum)


class PreviousEpochTeacher(TeacherUpdate):
    """A frozen snapshot of the student taken at the start of every epoch."""

    def on_epoch_start(self, teacher, student):
        copy_weights_(teacher, student)


class PreviousIterTeacher(TeacherUpdate):
    """The student as it was before the last optimizer step (copied just before stepping)."""

    def before_step(self, teacher, student):
        copy_weights_(teacher, student)


class StudentCopyTeacher(TeacherUpdate):
    """The current student: copied after every optimizer step, so targets come from the same weights."""

    def after_step(self, teacher, student, momentum):
        copy_weights_(teacher, student)


STRATEGIES: dict[str, type[TeacherUpdate]] = {
    "momentum": MomentumTeacher,
    "previous_epoch": PreviousEpochTeacher,
    "previous_iter": PreviousIterTeacher,
    "student_copy": StudentCopyTeacher,
}


def teacher_update(name: str) -> TeacherUpdate:
    return STRATEGIES[name]()


@torch.no_grad()
def ema_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    t_params = list(teacher.parameters())
    s_params = [p.detach() for p in student.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)


@torch.no_grad()
def copy_weights_(teacher: nn.Module, student: nn.Module) -> None:
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.copy_(s)
