"""The network's attention and patch embedding as they compute while a CPU autocast region runs:
the same functions as timm's and torch's modules, in the layouts and kernels that torch's CPU
operators run fastest at the short sequences of small crops (17 and 5 tokens). Each module keeps
its own forward outside autocast, so plain fp32 is timm and torch unchanged; the modules are
swapped in place (an instance attribute), so state_dict keys, identities and checkpoints are too.
``python -m benchmarks.run --only ops`` measures what each change saved."""
from __future__ import annotations

import types
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ATTENTION_PARTS = ("qkv", "q_norm", "k_norm", "attn_drop", "norm", "proj", "proj_drop", "num_heads", "head_dim",
                    "scale")


def fp32_softmax_attention(model: nn.Module, enabled: bool = True) -> int:
    """Compute the attention of every timm ``Attention`` in ``model`` as the reference code does
    under GPU autocast while an autocast region runs: both matmuls (q k^T and the weights times v)
    in the autocast dtype, the softmax in fp32, by ``SoftmaxAttention``.

    On CPU, at 17 or 5 tokens, torch's fused attention kernel is several times slower in bf16 than
    in fp32, and in fp32 it needs q, k and v cast up and the output cast back, forward and
    backward: 14 % of the tiny bf16 step went to those casts and 21 % to the fp32 kernel. Small
    bf16 matmuls and a softmax on the 17 x 17 scores cost less on every CPU whose bf16 matmuls are
    fast. Outside autocast, with a mask, or with attention dropout in training, the module's own
    forward runs. Returns how many modules it changed; ``enabled=False`` restores timm's forward.
    Modules of an unexpected shape are left alone.
    """
    return _swap_forward(model, _is_plain_attention, _fp32_softmax_attention_forward, enabled)


def patch_matmul_embedding(model: nn.Module, enabled: bool = True) -> int:
    """Compute every patch-embedding convolution of ``model`` (kernel = stride, no padding) as the
    matmul it is, while an autocast region runs: each patch flattened, times the kernel flattened.

    The same function, summed in another order. On CPU, oneDNN's bf16 convolution is slow at the
    patch embedding's shape, its backward most of all (3.4 ms a call in the tiny bf16 step on a
    2-core Xeon with AMX); as a matmul, that step took 0.114 s instead of 0.122.
    Outside autocast, and for any other convolution, the module's own forward runs. Returns how
    many modules it changed; ``enabled=False`` restores torch's forward.
    """
    return _swap_forward(model, _is_patch_convolution, _patch_matmul_forward, enabled)


class SoftmaxAttention(torch.autograd.Function):
    """softmax(q k^T * scale) v for every head, from the qkv linear layer's output ``[B, T, 3, H,
    D]`` to the layout the output projection reads ``[B, T, H * D]``; matmuls in the input's
    dtype, the softmax in at least fp32, the backward written out by hand.

    Why by hand: torch's generic path copies q, k and v head-major one by one forward, and
    backward stacks their gradients and copies the stack back; here each direction is one copy.
    The scores are held keys by queries, so torch's CPU softmax over the keys vectorises across
    contiguous queries instead of within rows of 5 keys (2.5x faster forward and backward at 5
    tokens), and the scale is applied inside the matmuls (``alpha``), not as a pass over q.
    """

    @staticmethod
    def forward(ctx, qkv: Tensor, scale: float) -> Tensor:
        batch, tokens, _, heads, dim = qkv.shape
        q, k, v = qkv.permute(2, 0, 3, 1, 4).reshape(3, batch * heads, tokens, dim).unbind(0)
        scores = torch.baddbmm(_no_input(q, tokens), k, q.transpose(1, 2), beta=0, alpha=scale)
        probs = torch.softmax(scores, dim=1, dtype=torch.promote_types(qkv.dtype, torch.float32))
        weights = probs.to(qkv.dtype)
        out = torch.bmm(weights.transpose(1, 2), v)  # out[q] = sum over keys k of p[k, q] v[k]
        ctx.save_for_backward(q, k, v, probs, weights)
        ctx.scale, ctx.batch = scale, batch
        return out.view(batch, heads, tokens, dim).transpose(1, 2).reshape(batch, tokens, heads * dim)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        q, k, v, probs, weights = ctx.saved_tensors
        (batch_heads, tokens, dim), batch = q.shape, ctx.batch
        heads = batch_heads // batch
        grad_out = grad.to(q.dtype).view(batch, tokens, heads, dim).transpose(1, 2).reshape(batch_heads, tokens, dim)
        grad_qkv = q.new_empty(3, batch_heads, tokens, dim)
        torch.bmm(weights, grad_out, out=grad_qkv[2])  # dv[k] = sum over q of p[k, q] g[q]
        grad_weights = torch.baddbmm(_no_input(q, tokens), v, grad_out.transpose(1, 2), beta=0,
                                     alpha=ctx.scale)  # scale * dL/dp[k, q] = scale * v[k] . g[q]
        grad_scores = torch._softmax_backward_data(grad_weights.to(probs.dtype), probs, 1, probs.dtype).to(q.dtype)
        torch.bmm(grad_scores.transpose(1, 2), k, out=grad_qkv[0])  # dq[q] = scale * sum over k of ds[k, q] k[k]
        torch.bmm(grad_scores, q, out=grad_qkv[1])  # dk[k] = scale * sum over q of ds[k, q] q[q]
        return grad_qkv.view(3, batch, heads, tokens, dim).permute(1, 3, 0, 2, 4), None


def _no_input(like: Tensor, tokens: int) -> Tensor:
    """The ignored ``input`` of a ``baddbmm`` with ``beta=0``: one element, expanded (no memory)."""
    return like.new_empty(()).expand(like.shape[0], tokens, tokens)


def _is_plain_attention(module: nn.Module) -> bool:
    return (hasattr(module, "fused_attn") and all(hasattr(module, a) for a in _ATTENTION_PARTS)
            and getattr(module, "gate", None) is None)


def _is_patch_convolution(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.kernel_size == module.stride
            and module.padding == (0, 0) and module.dilation == (1, 1) and module.groups == 1
            and module.padding_mode == "zeros")


def _swap_forward(model: nn.Module, matches: Callable[[nn.Module], bool], forward: Callable,
                  enabled: bool) -> int:
    """Give each module of ``model`` that ``matches`` its own ``forward`` (``enabled``), or take it
    back so that its class's runs again. Returns how many modules matched."""
    changed = 0
    for module in filter(matches, model.modules()):
        if enabled:
            module.forward = types.MethodType(forward, module)
        elif "forward" in module.__dict__:
            del module.forward
        changed += 1
    return changed


def _patch_matmul_forward(self: nn.Conv2d, x: Tensor) -> Tensor:
    (ph, pw), (batch, chans, height, width) = self.kernel_size, x.shape
    if not torch.is_autocast_enabled(x.device.type) or height % ph or width % pw:
        return type(self).forward(self, x)
    rows, cols = height // ph, width // pw
    patches = x.reshape(batch, chans, rows, ph, cols, pw).permute(0, 2, 4, 1, 3, 5)
    out = F.linear(patches.reshape(batch, rows, cols, chans * ph * pw),
                   self.weight.reshape(self.out_channels, -1), self.bias)
    return out.permute(0, 3, 1, 2)  # NCHW, as the convolution returns it


def _fp32_softmax_attention_forward(self, x: Tensor, attn_mask: Tensor | None = None,
                                    is_causal: bool = False) -> Tensor:
    dropping = self.training and getattr(self.attn_drop, "p", 0.0) > 0
    if attn_mask is not None or is_causal or dropping or not torch.is_autocast_enabled(x.device.type):
        return type(self).forward(self, x, attn_mask, is_causal)
    batch, tokens, _ = x.shape
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
    if not (isinstance(self.q_norm, nn.Identity) and isinstance(self.k_norm, nn.Identity)):
        q, k, v = qkv.unbind(2)  # per-head norms of q and k (timm's qk_norm), cast as autocast would
        qkv = torch.stack((self.q_norm(q).to(v.dtype), self.k_norm(k).to(v.dtype), v), dim=2)
    out = SoftmaxAttention.apply(qkv, self.scale)
    return self.proj_drop(self.proj(self.norm(out)))
