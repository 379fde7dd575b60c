"""DINO's signature figure, measured: the teacher's last-layer CLS self-attention over the patches
of a few fixed images, per head, and the patches that hold 60 % of it (the paper's Fig. 3).

Each arm (setting) is shown by the teacher of its lowest-seed finished run, read from that run's
``checkpoint.pth``, the final one for a finished run. The images are the first ``QUERIES`` of the
evaluation split (Fashion-MNIST's test set; an ImageFolder's ``val/`` in its sorted order), taken as
the k-NN sees them (``core.augment.eval_views``), so every arm looks at the same pixels. The
attention comes from timm's own ``AttentionExtract`` (a forward hook on the last block's
``attn_drop``, which timm only calls on its unfused path), not from a re-implementation of the ViT.

A report must be built from whatever is there, so a run without a readable checkpoint (failed
before its first epoch, its folder deleted or never copied off the cluster), or images that are
not on this machine, gives a note in place of the row; the next seed of the arm is tried first.
Nothing here writes: the checkpoint is read as it is, never moved aside as resuming would.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from timm.utils import AttentionExtract
from torch import Tensor, nn

from core.augment import eval_views
from core.config import DINOConfig
from core.data import DataSplits, build_data
from core.export import teacher_weights
from reports import labels
from reports.load import StudyResults
from studies.layout import Layout

QUERIES = 4  # the first images of the evaluation split
MASS = 0.6  # the share of the attention the paper's masks keep
CHECKPOINT = "checkpoint.pth"


@dataclass(frozen=True)
class ArmMaps:
    """One arm's row: ``images`` (B, C, H, W) in [0, 1]; ``attention`` (B, heads, h, w), the CLS
    token's attention to each patch (each head's map sums to 1 less what the CLS token keeps on
    itself); ``masks``, the same shape, True on the patches that hold ``MASS`` of each head's."""

    setting: str
    label: str
    seed: int
    epoch: int
    images: np.ndarray
    attention: np.ndarray
    masks: np.ndarray


@dataclass(frozen=True)
class Attention:
    """Every arm's row that could be made, and one note per run that could not."""

    arms: list[ArmMaps]
    notes: list[str]


def mass_mask(attention: Tensor, mass: float = MASS) -> Tensor:
    """True on the smallest set of entries of the last dimension that holds at least ``mass`` of
    its sum: the largest entries, taken in order until the mass is reached (on ties, the first)."""
    values, order = torch.sort(attention.double(), dim=-1, descending=True, stable=True)
    before = values.cumsum(-1) - values  # the mass of the larger entries, before this one joins
    keep = before < mass * values.sum(-1, keepdim=True)
    return torch.zeros_like(keep).scatter(-1, order, keep)


@torch.no_grad()
def cls_attention(backbone: nn.Module, images: Tensor) -> Tensor:
    """The last block's attention from the CLS token to every patch, (B, heads, h, w); that
    block is left on timm's unfused path."""
    last = len(backbone.blocks) - 1
    backbone.blocks[last].attn.fused_attn = False  # the fused kernel never forms the attention matrix
    (attention,) = AttentionExtract(backbone, names=[f"blocks.{last}.attn.attn_drop"], method="hook")(images).values()
    grid = backbone.patch_embed.dynamic_feat_size(tuple(images.shape[-2:]))
    return attention[:, :, 0, backbone.num_prefix_tokens:].reshape(*attention.shape[:2], *grid)


def teacher_backbone(checkpoint: Path) -> tuple[DINOConfig, nn.Module, int]:
    """The run's config, its teacher backbone as ``core.export`` rebuilds it, and the epochs it
    trained. Raises ``ValueError`` on a file torch cannot read (it is read as it is: unlike
    resuming, a report moves nothing aside)."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torn, truncated, not a checkpoint: torch's own message alone can be "Errno 22"
        raise ValueError(f"{checkpoint} is unreadable ({type(error).__name__}: {error})") from error
    config, weights, spec = teacher_weights(state)
    backbone = timm.create_model(spec["model"], **spec["kwargs"])
    backbone.load_state_dict(weights)
    return config, backbone.eval(), int(state["epoch"])


def arm_maps(results: StudyResults) -> Attention:
    """Each arm's row, in declared order; the notes say which runs gave none, and why."""
    splits: dict = {}  # DataConfig -> its splits (or the error reading them): read once per build
    arms, notes = [], []
    for setting, label in labels.labels(results).items():
        arm, problems = _first_readable(results, setting, label, splits)
        if arm is None:
            notes.append(f"{label}: no attention maps ({'; '.join(problems) or 'no finished run'}).")
            continue
        arms.append(arm)
        if problems:
            notes.append(f"{label}: shown with seed {arm.seed} ({'; '.join(problems)}).")
    return Attention(arms, notes)


def _first_readable(results: StudyResults, setting: str, label: str, splits: dict) -> tuple[ArmMaps | None, list[str]]:
    """The maps of the setting's lowest-seed finished run that gives them, and why each run
    before it gave none."""
    runs = results.latest()
    done = runs[(runs["setting"] == setting) & (runs["state"] == "done")].sort_values("seed")
    problems = []
    for _, run in done.iterrows():
        try:
            return _maps(results, run, label, splits), problems
        except Exception as error:  # whatever the file or the data hold, the report is built
            problems.append(f"seed {run['seed']}: {_reason(error)}")
    return None, problems


def _maps(results: StudyResults, run: pd.Series, label: str, splits: dict) -> ArmMaps:
    checkpoint = run_folder(results, run) / CHECKPOINT
    if not checkpoint.exists():
        raise FileNotFoundError(f"no {CHECKPOINT} in {checkpoint.parent}")
    config, backbone, epoch = teacher_backbone(checkpoint)
    if config.data not in splits:
        try:
            splits[config.data] = build_data(config.data)
        except Exception as error:  # kept: the other arms on the same data fail at once, for the same reason
            splits[config.data] = error
    data = splits[config.data]
    if isinstance(data, Exception):
        raise data
    x = _queries(data, config)
    attention = cls_attention(backbone, x)
    mean, std = (torch.tensor(v).view(-1, 1, 1) for v in (data.mean, data.std))
    return ArmMaps(str(run["setting"]), label, int(run["seed"]), epoch, (x * std + mean).clamp(0, 1).numpy(),
                   attention.numpy(), mass_mask(attention.flatten(2)).reshape(attention.shape).numpy())


def _queries(data: DataSplits, config: DINOConfig) -> Tensor:
    """The first ``QUERIES`` images of the evaluation split as the k-NN sees them."""
    images = torch.stack([data.queries[i][0] for i in range(min(QUERIES, len(data.queries)))])
    return eval_views(images, config.crops.global_size, config.data.eval_crop, data.mean, data.std)


def run_folder(results: StudyResults, run: pd.Series) -> Path:
    """The run's trainer folder: under the results folder first (a copy off the cluster still
    reads), else where the ledger says it trained."""
    recorded = Path(str(run["run_dir"]))
    inside = Layout(results.results_dir).run_dir(recorded.name)
    return inside if inside.is_dir() else recorded


def _reason(error: Exception) -> str:
    """One line: a missing or unreadable file, or missing data, says where; anything else its type too."""
    text = str(error) if isinstance(error, (FileNotFoundError, ValueError)) else f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:300]
