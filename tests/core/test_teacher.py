"""Each teacher-update strategy does what its name says, checked on real weights."""
import copy

import pytest
import torch

from core.teacher import teacher_update


def make_pair():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    teacher = copy.deepcopy(student).requires_grad_(False)
    return student, teacher


def sgd_step(student):
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))


def weights(module):
    return [p.detach().clone() for p in module.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_momentum_is_ema_of_student():
    student, teacher = make_pair()
    strategy = teacher_update("momentum")
    old_teacher = weights(teacher)
    sgd_step(student)
    strategy.after_step(teacher, student, momentum=0.9)
    for t, t0, s in zip(teacher.parameters(), old_teacher, student.parameters()):
        assert torch.allclose(t, 0.9 * t0 + 0.1 * s)


def test_momentum_one_freezes_teacher_and_zero_copies():
    student, teacher = make_pair()
    strategy = teacher_update("momentum")
    before = weights(teacher)
    sgd_step(student)
    strategy.after_step(teacher, student, momentum=1.0)
    assert same(weights(teacher), before)
    strategy.after_step(teacher, student, momentum=0.0)
    assert same(weights(teacher), weights(student))


def simulate(strategy_name, epochs=2, iters=3):
    """Run the hooks in the trainer's order; record (teacher, student-before-step, student) per iteration."""
    student, teacher = make_pair()
    strategy = teacher_update(strategy_name)
    trace = []
    for _ in range(epochs):
        strategy.on_epoch_start(teacher, student)
        epoch_start = weights(student)
        for _ in range(iters):
            teacher_used = weights(teacher)  # what the forward pass saw
            before = weights(student)
            strategy.before_step(teacher, student)
            sgd_step(student)
            strategy.after_step(teacher, student, 0.996)
            trace.append((teacher_used, before, epoch_start))
    return trace


def test_student_copy_targets_come_from_the_current_student():
    for teacher_used, student_at_forward, _ in simulate("student_copy"):
        assert same(teacher_used, student_at_forward)


def test_previous_iter_is_the_student_before_the_last_step():
    trace = simulate("previous_iter")
    for (_, before_prev, _), (teacher_used, before_now, _) in zip(trace, trace[1:]):
        assert same(teacher_used, before_prev)
        assert not same(teacher_used, before_now)


def test_previous_epoch_is_frozen_snapshot_at_epoch_start():
    trace = simulate("previous_epoch", epochs=3, iters=3)
    for teacher_used, _, epoch_start in trace:
        assert same(teacher_used, epoch_start)
    assert not same(trace[0][0], trace[3][0])  # a new snapshot each epoch


def test_unknown_strategy_name():
    with pytest.raises(KeyError):
        teacher_update("ema")
