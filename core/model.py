"""Backbone (a timm ViT created by name) + DINO projection head, run once per crop resolution."""
from __future__ import annotations

import itertools
import types
from typing import Callable

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import BackboneConfig, ConfigError, HeadConfig


def build_backbone(cfg: BackboneConfig, in_chans: int, drop_path_rate: float) -> nn.Module:
    """A timm ViT that returns the CLS token after the final norm (``num_classes=0``) and accepts
    any crop size that the patch size tiles (``dynamic_img_size``), for global and local crops."""
    return timm.create_model(
        cfg.name, pretrained=False, num_classes=0, in_chans=in_chans, img_size=cfg.img_size,
        patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, drop_path_rate=drop_path_rate, dynamic_img_size=True)


def check_backbone(cfg: BackboneConfig, in_chans: int = 3) -> None:
    """Refuse a model name timm does not know, or a shape it rejects, before any work starts:
    the backbone is built on the meta device, which allocates nothing."""
    try:
        with torch.device("meta"):
            build_backbone(cfg, in_chans, 0.0)
    except Exception as error:  # timm raises RuntimeError, ValueError or AssertionError
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"backbone.name={cfg.name!r} with patch_size={cfg.patch_size}, img_size="
                          f"{cfg.img_size}, embed_dim={cfg.embed_dim}, depth={cfg.depth}, num_heads="
                          f"{cfg.num_heads}: timm refuses it ({reason}); pick a model from "
                          "timm.list_models('vit_*') and a shape it accepts") from None


class DINOHead(nn.Module):
    """MLP (GELU, optional BatchNorm) to a bottleneck, L2-normalisation, then a weight-normalised
    linear layer without bias to K outputs. ``norm_last_layer`` freezes the weight-norm gain at 1."""

    def __init__(self, in_dim: int, cfg: HeadConfig):
        super().__init__()
        dims = [in_dim] + [cfg.hidden_dim] * (cfg.nlayers - 1) + [cfg.bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(d_in, d_out))
            if i < len(dims) - 2:
                if cfg.use_bn:
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.apply(_init_linear)
        self.last_layer = nn.utils.parametrizations.weight_norm(
            nn.Linear(cfg.bottleneck_dim, cfg.out_dim, bias=False))
        gain = self.last_layer.parametrizations.weight.original0
        gain.data.fill_(1.0)
        if cfg.norm_last_layer:
            gain.requires_grad = False

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)

    @torch.no_grad()
    def mean_gain(self) -> float:
        """Mean weight-norm gain g_k of the last layer: 1 while ``norm_last_layer`` fixes it."""
        return self.last_layer.parametrizations.weight.original0.float().mean().item()


class MultiCropNetwork(nn.Module):
    """Backbone + head over a list of views: one backbone pass per run of same-size views (one for
    the globals, one for the locals), then the head once on all features."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, views: list[Tensor]) -> Tensor:
        features = []
        for _, group in itertools.groupby(views, key=lambda v: v.shape[-1]):
            features.append(self.backbone(torch.cat(list(group))))
        return self.head(torch.cat(features))


def build_network(backbone_cfg: BackboneConfig, head_cfg: HeadConfig, in_chans: int,
                  drop_path_rate: float) -> MultiCropNetwork:
    backbone = build_backbone(backbone_cfg, in_chans, drop_path_rate)
    return MultiCropNetwork(backbone, DINOHead(backbone.num_features, head_cfg))


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


_ATTENTION_PARTS = ("qkv", "q_norm", "k_norm", "attn_drop", "norm", "proj", "proj_drop", "num_heads", "head_dim",
                    "scale")


def fp32_softmax_attention(model: nn.Module, enabled: bool = True) -> int:
    """Compute the attention of every timm ``Attention`` in ``model`` as the reference code does
    under GPU autocast while an autocast region runs: both matmuls (q k^T and the weights times v)
    in the autocast dtype, the softmax in fp32.

    On CPU, at the short sequences of small crops (17 or 5 tokens), torch's fused attention kernel
    is several times slower in bf16 than in fp32, and in fp32 it needs q, k and v cast up and the
    output cast back, forward and backward: 14 % of the tiny bf16 step went to those casts and
    21 % to the fp32 kernel (``python -m benchmarks.run --only ops``). Two small bf16 matmuls and
    a softmax on the 17 x 17 scores cost less on every CPU whose bf16 matmuls are fast.
    Outside autocast the module's own forward runs unchanged. Returns how many modules it changed;
    ``enabled=False`` restores timm's forward. Modules of an unexpected shape are left alone.
    """
    return _swap_forward(model, _is_plain_attention, _fp32_softmax_attention_forward, enabled)


def _is_plain_attention(module: nn.Module) -> bool:
    return (hasattr(module, "fused_attn") and all(hasattr(module, a) for a in _ATTENTION_PARTS)
            and getattr(module, "gate", None) is None)


def patch_matmul_embedding(model: nn.Module, enabled: bool = True) -> int:
    """Compute every patch-embedding convolution of ``model`` (kernel = stride, no padding) as the
    matmul it is, while an autocast region runs: each patch flattened, times the kernel flattened.

    The same function, summed in another order. On CPU, oneDNN's bf16 convolution is slow at the
    patch embedding's shape, its backward most of all (3.4 ms a call in the tiny bf16 step on a
    2-core Xeon with AMX, ``python -m benchmarks.run --only ops``); as a matmul, that step took
    0.114 s instead of 0.122.
    Outside autocast, and for any other convolution, the module's own forward runs. Returns how
    many modules it changed; ``enabled=False`` restores torch's forward.
    """
    return _swap_forward(model, _is_patch_convolution, _patch_matmul_forward, enabled)


def _is_patch_convolution(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.kernel_size == module.stride
            and module.padding == (0, 0) and module.dilation == (1, 1) and module.groups == 1
            and module.padding_mode == "zeros")


def _swap_forward(model: nn.Module, matches: Callable[[nn.Module], bool], forward: Callable,
                  enabled: bool) -> int:
    """Give each module of ``model`` that ``matches`` its own ``forward`` (``enabled``), or take it
    back so that its class's runs again; an instance attribute, so state_dict keys, the modules'
    identities and checkpoints are unchanged. Returns how many modules matched."""
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
    if attn_mask is not None or is_causal or not torch.is_autocast_enabled(x.device.type):
        return type(self).forward(self, x, attn_mask, is_causal)
    batch, tokens, _ = x.shape
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    q, k = self.q_norm(q), self.k_norm(k)
    # Scores held keys by queries: torch's CPU softmax over keys then vectorises across contiguous
    # queries instead of within rows of 5 keys (2.5x faster forward and backward at 5 tokens).
    scores = k @ (q * self.scale).transpose(-2, -1)
    weights = self.attn_drop(scores.float().softmax(dim=-2).to(v.dtype))
    out = self.norm((weights.transpose(-2, -1) @ v).transpose(1, 2).reshape(batch, tokens, -1))
    return self.proj_drop(self.proj(out))
