"""The attention maps (``reports.attention``) as one figure: a row per arm, and for each query
image three panels: the image, the CLS attention averaged over the heads, and each head's 60 %
mask in its own colour over the image.

Every head's full map side by side would be 4 images x (1 + 6 heads) = 28 panels a row on ViT-S;
the mean keeps where the attention goes readable, and the coloured masks keep what tells the heads
apart in DINO's Fig. 3: each head attending to its own part of the object.
"""
from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from reports.attention import MASS, QUERIES, Attention
from reports.plots import COLOURS, figure, legend_below

PANEL = 1.05  # inches per panel
MASK_ALPHA = 0.5
COLUMNS = ("image", "mean attention", f"{MASS:.0%} masks")


def attention_figure(found: Attention) -> Figure | None:
    """The figure, or None when no arm has maps (the page then says why in notes)."""
    if not found.arms:
        return None
    images = max(len(arm.images) for arm in found.arms)
    fig = figure(PANEL * len(COLUMNS) * images + 1.4, PANEL * len(found.arms) + 0.9)
    grid = fig.subplots(len(found.arms), len(COLUMNS) * images, squeeze=False)
    heads = max(arm.attention.shape[1] for arm in found.arms)
    for row, arm in zip(grid, found.arms):
        for i in range(len(arm.images)):
            picture, mean, masks = row[len(COLUMNS) * i:len(COLUMNS) * (i + 1)]
            extent = (0, arm.images.shape[-1], arm.images.shape[-2], 0)
            image = arm.images[i].transpose(1, 2, 0)
            grey = image.shape[-1] == 1  # Fashion-MNIST: one channel, drawn as grey levels
            for ax in (picture, masks):
                ax.imshow(image[..., 0] if grey else image, extent=extent,
                          **({"cmap": "gray", "vmin": 0, "vmax": 1} if grey else {}))
            mean.imshow(arm.attention[i].mean(0), cmap="inferno", extent=extent, interpolation="nearest")
            for head, mask in enumerate(arm.masks[i]):
                overlay = np.zeros((*mask.shape, 4))
                overlay[mask] = to_rgba(COLOURS[head % len(COLOURS)], MASK_ALPHA)
                masks.imshow(overlay, extent=extent, interpolation="nearest")
        row[0].set_ylabel(f"{arm.label}\nseed {arm.seed}, epoch {arm.epoch}", fontsize=8)
    for ax in grid.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    for column, ax in enumerate(grid[0]):
        ax.set_title(f"{column // len(COLUMNS) + 1}: {COLUMNS[column % len(COLUMNS)]}", fontsize=8)
    legend_below(fig, [], ncol=min(heads, 8), extra=[Patch(color=COLOURS[h % len(COLOURS)], alpha=MASK_ALPHA,
                                                           label=f"head {h + 1}") for h in range(heads)])
    return fig


def caption() -> str:
    return (f"The teacher's last-layer self-attention from the CLS token to the patches, on the first {QUERIES} "
            "images of the evaluation split (the same for every arm, as the k-NN sees them), one row per arm from "
            "the final checkpoint of its lowest-seed finished run. For each image: the image, the attention "
            f"averaged over the heads (brighter: more), and for each head the fewest patches that hold {MASS:.0%} "
            "of its attention, one colour per head, as in the paper's Fig. 3.")
