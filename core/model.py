"""Backbone (a timm ViT created by name) + DINO projection head, run once per crop resolution."""
from __future__ import annotations

import itertools

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
