"""DINO's cross-entropy between a centred, sharpened teacher and the student, with the two
quantities that tell collapse modes apart: the target entropy h(P_t) and KL(P_t || P_s).

H(P_t, P_s) = h(P_t) + KL(P_t || P_s), so both come out of the same computation as the loss.
Sharpening-only collapse drives h(P_t) to 0, centering-only collapse drives it to ln K, and in
both KL goes to 0 (the paper's section 5.3).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class DINOLoss(nn.Module):
    """Loss over every (teacher global view, other student view) pair, averaged over the pairs.

    ``center_momentum`` and ``student_temp`` are hard-coded in the reference code; here they are
    parameters, and ``centering=False`` removes the center altogether (it stays at zero).
    A ``teacher_temp`` of 0 makes the targets one-hot at the argmax of the centred teacher logits.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9,
                 centering: bool = True):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.centering = centering
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.target_entropy = torch.tensor(float("nan"))
        self.kl = torch.tensor(float("nan"))
        self.student_entropy = torch.tensor(float("nan"))  # h(P_s): what tau_s sharpens

    def forward(self, student_output: Tensor, teacher_output: Tensor, teacher_temp: float) -> Tensor:
        """``student_output``: all views stacked along the batch, the two global views first;
        ``teacher_output``: the two global views. Updates the center after computing the loss."""
        batch = teacher_output.shape[0] // 2
        if teacher_output.shape[0] != 2 * batch or student_output.shape[0] % batch:
            raise ValueError(f"teacher_output has {teacher_output.shape[0]} rows and student_output "
                             f"{student_output.shape[0]}: expected 2*B teacher rows and n_views*B student rows")
        views = student_output.shape[0] // batch
        student_logp = F.log_softmax(student_output.float() / self.student_temp, dim=-1)
        teacher_p = self.targets(teacher_output, teacher_temp)
        # The sum over every (teacher view t, student view s != t) pair of sum_k P_t log P_s is the
        # sum over all pairs, (sum_t P_t) . (sum_s log P_s), less the pairs s = t: a few whole-batch
        # operations instead of a handful per pair, forward and backward.
        logp, p = student_logp.view(views, batch, -1), teacher_p.view(2, batch, -1)
        cross = (p.sum(0) * logp.sum(0)).sum() - (p * logp[:2]).sum()
        loss = -cross / (batch * (2 * views - 2))
        with torch.no_grad():
            # each view holds the same number of rows, so the mean over views of a batch mean is
            # the mean over all rows: of h(P_t) over both teacher views, of h(P_s) over all views
            self.target_entropy = _entropy(teacher_p)
            self.kl = loss.detach() - self.target_entropy
            self.student_entropy = -(student_logp.exp() * student_logp).sum(dim=-1).mean()
        self.update_center(teacher_output)
        return loss

    @torch.no_grad()
    def targets(self, teacher_output: Tensor, teacher_temp: float) -> Tensor:
        """P_t = softmax((g_t - c) / tau_t), or one-hot argmax targets when tau_t = 0."""
        centred = teacher_output.float() - self.center
        if teacher_temp == 0:
            return F.one_hot(centred.argmax(dim=-1), centred.shape[-1]).float()
        return F.softmax(centred / teacher_temp, dim=-1)

    @torch.no_grad()
    def update_center(self, teacher_output: Tensor) -> None:
        """c <- m c + (1 - m) mean of the raw teacher logits over the batch, both views and all ranks."""
        if not self.centering:
            return
        batch_center = teacher_output.float().sum(dim=0, keepdim=True)
        count = teacher_output.shape[0]
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            count *= dist.get_world_size()
        batch_center = batch_center / count
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)


def _entropy(p: Tensor) -> Tensor:
    """Batch-mean Shannon entropy in nats; 0 log 0 counts as 0 (one-hot targets have h = 0)."""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(dim=-1).mean()
