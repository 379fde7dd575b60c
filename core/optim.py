"""AdamW as the reference sets it up: no weight decay on biases and 1-D parameters, and each
parameter's gradient clipped on its own."""
from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module) -> list[dict]:
    """Biases and 1-D parameters (norms, gains) get no weight decay, as in the reference; the
    ``regularized`` flag tells the step which group the weight-decay schedule applies to."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith(".bias") or p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "regularized": True}, {"params": no_decay, "regularized": False}]


@torch.no_grad()
def clip_gradients_per_parameter(model: nn.Module, max_norm: float) -> None:
    """Each parameter's gradient is rescaled to norm <= max_norm on its own (the reference's
    per-parameter clipping, not torch's global-norm clipping), in a few multi-tensor kernels
    instead of a Python loop of three ops per parameter."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    norms = torch.stack(torch._foreach_norm(grads, 2))
    scales = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    torch._foreach_mul_(grads, list(scales.unbind()))
