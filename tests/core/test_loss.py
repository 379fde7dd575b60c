"""DINOLoss against the paper's formulas computed by hand with the math module."""
import math

import pytest
import torch

from core.loss import DINOLoss


def softmax(xs, t):
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def cross_entropy(p, q):
    return -sum(pi * math.log(qi) for pi, qi in zip(p, q))


def test_loss_equals_hand_computed_formula():
    # batch of 1, K = 3, student views: global1, global2, local1; teacher: global1, global2
    student = [[1.0, 0.0, -1.0], [0.5, 0.2, 0.1], [-0.3, 0.8, 0.0]]
    teacher = [[2.0, 1.0, 0.0], [0.0, 0.5, 1.5]]
    center = [0.1, -0.2, 0.3]
    tau_s, tau_t = 0.1, 0.04
    loss_fn = DINOLoss(3, student_temp=tau_s, center_momentum=0.9)
    loss_fn.center.copy_(torch.tensor([center]))
    loss = loss_fn(torch.tensor(student), torch.tensor(teacher), tau_t)

    p_t = [softmax([t - c for t, c in zip(row, center)], tau_t) for row in teacher]
    p_s = [softmax(row, tau_s) for row in student]
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]  # teacher view, student view != teacher view
    expected = sum(cross_entropy(p_t[t], p_s[s]) for t, s in pairs) / len(pairs)
    assert loss.item() == pytest.approx(expected, rel=1e-5)

    entropy = sum(-sum(p * math.log(p) for p in row) for row in p_t) / 2
    assert loss_fn.target_entropy.item() == pytest.approx(entropy, rel=1e-5, abs=1e-7)
    assert loss_fn.kl.item() == pytest.approx(expected - entropy, rel=1e-5, abs=1e-6)


def test_term_count_is_two_n_views_minus_two():
    torch.manual_seed(0)
    batch, n_views, k = 4, 6, 8
    loss_fn = DINOLoss(k, centering=False)
    student = torch.randn(n_views * batch, k)
    teacher = torch.randn(2 * batch, k)
    loss = loss_fn(student, teacher, 0.05)
    s = torch.log_softmax(student / 0.1, -1).chunk(n_views)
    t = torch.softmax(teacher / 0.05, -1).chunk(2)
    terms = [-(t[i] * s[j]).sum(-1).mean() for i in range(2) for j in range(n_views) if i != j]
    assert len(terms) == 2 * n_views - 2
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-6)


def test_uniform_teacher_has_entropy_ln_k():
    k = 1000
    loss_fn = DINOLoss(k, centering=False)
    loss_fn(torch.randn(4 * 3, k), torch.zeros(2 * 3, k), 0.04)
    assert loss_fn.target_entropy.item() == pytest.approx(math.log(k), rel=1e-6)


def test_teacher_equal_to_student_gives_zero_kl():
    torch.manual_seed(1)
    k, batch = 16, 5
    logits = torch.randn(batch, k)
    # every view carries the same logits and both use the same temperature: P_t = P_s
    loss_fn = DINOLoss(k, student_temp=0.1, centering=False)
    loss_fn(logits.repeat(4, 1), logits.repeat(2, 1), 0.1)
    assert loss_fn.kl.item() == pytest.approx(0.0, abs=1e-5)


def test_center_update_formula():
    k, m = 4, 0.9
    loss_fn = DINOLoss(k, center_momentum=m)
    old = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    loss_fn.center.copy_(old)
    teacher = torch.tensor([[0.0, 1.0, 2.0, 3.0], [4.0, 3.0, 2.0, 1.0], [2.0, 2.0, 2.0, 2.0],
                            [6.0, 0.0, 0.0, 2.0]])
    loss_fn(torch.randn(6, k), teacher, 0.04)
    batch_mean = [3.0, 1.5, 1.5, 2.0]
    expected = [m * o + (1 - m) * b for o, b in zip(old[0].tolist(), batch_mean)]
    assert loss_fn.center[0].tolist() == pytest.approx(expected)


def test_center_is_updated_after_the_loss_uses_the_old_center():
    k = 3
    loss_fn = DINOLoss(k, center_momentum=0.0)  # m = 0: the new center is the batch mean
    teacher = torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    student = torch.zeros(4, k)
    loss_fn(student, teacher, 0.04)  # old center 0: targets are one-hot-ish on class 0
    assert loss_fn.target_entropy.item() < 1e-3
    assert loss_fn.center[0].tolist() == pytest.approx([5.0, 0.0, 0.0])


def test_centering_off_keeps_center_zero_and_m_zero_is_allowed():
    loss_fn = DINOLoss(5, centering=False)
    loss_fn(torch.randn(8, 5), torch.randn(4, 5) + 3, 0.04)
    assert torch.count_nonzero(loss_fn.center) == 0


def test_zero_temperature_gives_one_hot_argmax_targets():
    loss_fn = DINOLoss(4, centering=False)
    teacher = torch.tensor([[0.1, 0.9, 0.3, 0.2], [0.5, 0.1, 0.2, 0.0]])
    student = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    loss = loss_fn(student, teacher, 0.0)
    logp = torch.log_softmax(student / 0.1, -1)
    # teacher view 0 targets class 1, view 1 targets class 0
    expected = (-logp[1, 1] - logp[2, 1] - logp[0, 0] - logp[2, 0]) / 4
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss_fn.target_entropy.item() == 0.0


def test_loss_backpropagates_to_student_only():
    student = torch.randn(6, 7, requires_grad=True)
    teacher = torch.randn(4, 7, requires_grad=True)
    DINOLoss(7)(student, teacher, 0.04).backward()
    assert student.grad is not None and teacher.grad is None


def test_student_entropy_closed_forms():
    k, batch = 16, 4
    loss = DINOLoss(k)
    teacher = torch.randn(2 * batch, k)
    loss(torch.zeros(4 * batch, k), teacher, 0.04)  # uniform student: h(P_s) = ln K
    assert loss.student_entropy.item() == pytest.approx(math.log(k), abs=1e-5)
    sharp = torch.full((4 * batch, k), -1e4)
    sharp[:, 3] = 0.0  # one-hot student: h(P_s) = 0
    loss(sharp, teacher, 0.04)
    assert loss.student_entropy.item() == pytest.approx(0.0, abs=1e-5)
