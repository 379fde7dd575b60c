"""Mixed precision as one function, so training, evaluation and the baselines compute under the
same autocast: a random-init baseline extracted in fp32 against a bf16 run would compare two
precisions, not two networks."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch
from torch import nn

from core.cpu_autocast import fp32_softmax_attention, patch_matmul_embedding

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A factory of the autocast context for ``precision`` ('fp32', 'bf16', 'fp16') on ``device``."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def prepare(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """Make ``model`` compute as training does under ``precision``: on CPU, attention as the
    reference computes it under autocast (bf16/fp16 matmuls, fp32 softmax), since torch's fused
    CPU attention kernel is slow at the short sequences of small crops in any precision, and the
    patch embedding as a matmul, since oneDNN's low-precision convolution is slow at its shape."""
    if device.type == "cpu" and precision in AUTOCAST_DTYPES:
        fp32_softmax_attention(model)
        patch_matmul_embedding(model)
    return model
