"""k-NN top-1 per setting: what this study measured, against what it must beat and beside the paper.

Each value is named by what ran, the paper's value under it where a profile maps it. The same k-NN
on a randomly initialised network and on raw pixels are drawn as lines, so that "below a random
network" is seen, not computed. The paper's ImageNet numbers share the y axis only at the paper's
scale; otherwise they get their own panel, where only their order and gaps mean something. Points
are joined only between neighbouring numeric values: a line between two teacher-update strategies
would claim an in-between that does not exist. A second axis gets one panel per value.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports import labels
from reports.load import StudyResults
from reports.noise import NoiseFigure
from reports.plots import axis_title, figure, legend_below, two_lines
from reports.references import KINDS, References
from reports.stats import CONFIDENCE, t_quantile
from reports.verdict import PAPER_COLLAPSE_MAX, paper_scale

STUDY, PAPER, COLLAPSED = "#4477AA", "#EE7733", "#CC3311"
REFERENCE_STYLE = {"random_init": {"ls": "--", "color": "0.35"}, "raw_pixels": {"ls": ":", "color": "0.2"}}


def knn_figure(results: StudyResults, table: pd.DataFrame, references: References | None,
               noise: NoiseFigure | None) -> Figure:
    panels = labels.facets(results)
    rows = table.set_index("setting")
    at_scale = paper_scale(results.plan["profile"])
    paper_panel = bool(table["paper"].notna().any()) and not at_scale
    width = max(4.6, 1.0 * len(panels[0].settings) + 2.2)
    fig = figure(width * (len(panels) + paper_panel), 5.2)
    axes = list(fig.subplots(1, len(panels) + paper_panel, squeeze=False)[0])
    for ax in axes[1:len(panels)]:
        ax.sharey(axes[0])
    for ax, facet in zip(axes, panels):
        _study_panel(ax, results, rows, facet, noise, with_paper=at_scale)
        _references(ax, rows.loc[facet.settings])
    if paper_panel:
        _paper_panel(axes[-1], results, rows, panels[0])
    if not table["n"].gt(0).any():
        progress = results.progress()
        axes[0].text(0.5, 0.5, "every run failed" if progress["failed"] == progress["total"] else
                     "no finished run yet", transform=axes[0].transAxes, ha="center", color="grey")
    legend_below(fig, axes, order=("this study", "one seed", "seeds", KINDS["random_init"], KINDS["raw_pixels"]))
    fig.suptitle(f"{results.name}: k-NN top-1 per {' × '.join(a['name'] for a in results.axes)}", fontweight="bold")
    return fig


def caption(results: StudyResults, table: pd.DataFrame, references: References | None,
            noise: NoiseFigure | None) -> str:
    profile = results.plan["profile"]
    parts = ["k-NN top-1 per setting, each named by what ran (the paper's value in brackets where the profile "
             "maps it): this study's mean over seeds with its 95 % t-interval, each of several seeds a dot"]
    if noise is not None and table["n"].eq(1).any():
        parts.append(f"a setting with one seed has a pale bar of ± the seed noise of {profile} "
                     f"(t × {noise.std:g} points over {noise.seeds} seeds)")
    if references is not None and references.distinct:
        parts.append("dashed: the same k-NN on a randomly initialised network of the same shape; dotted: on raw "
                     "pixels")
    if table["paper"].notna().any():
        parts.append("the paper's numbers beside them" if paper_scale(profile) else
                     f"the paper's numbers in their own panel, since {profile} is not the paper's scale")
    if len(results.axes) > 1:
        others = [a["name"] for a in results.axes if a is not labels.x_axis(results)]
        parts.append(f"one panel per value of {', '.join(others)}")
    parts.append("points are joined only between numeric values; collapsed settings are marked under their value")
    return "; ".join(parts) + "."


def _study_panel(ax: Axes, results: StudyResults, rows: pd.DataFrame, facet: labels.Facet,
                 noise: NoiseFigure | None, with_paper: bool) -> None:
    part = rows.loc[facet.settings]
    x = np.arange(len(facet.settings), dtype=float)
    numeric = [labels.numeric(labels.ran(results, s)[labels.x_axis(results)["name"]]) for s in facet.settings]
    mean = part["top1_mean"].to_numpy(dtype=float)
    seeded = part["n"].to_numpy() >= 2
    low, high = (mean - part["top1_ci_low"]).to_numpy(dtype=float), (part["top1_ci_high"] - mean).to_numpy(dtype=float)
    profile = results.plan["profile"]
    if seeded.any():
        ax.errorbar(x[seeded], mean[seeded], yerr=[low[seeded], high[seeded]], fmt="o", color=STUDY, capsize=4,
                    ms=7, label=f"this study ({profile}): mean, 95 % CI")
    single = part["n"].to_numpy() == 1
    if single.any():
        half = t_quantile(CONFIDENCE, noise.df) * noise.std if noise else 0.0
        ax.errorbar(x[single], mean[single], yerr=half if noise else None, fmt="o", color=STUDY, ms=7, capsize=4,
                    ecolor=(0.27, 0.47, 0.67, 0.35), elinewidth=4,
                    label=f"one seed: ± seed noise of {profile} (95 %)" if noise else
                    f"this study ({profile}): one seed")
    _joined(ax, x, mean, numeric, color=STUDY)
    seeds = results.latest()
    several = [s for s, n in zip(facet.settings, part["n"]) if n >= 2]  # one seed's dot is its mean
    seeds = seeds[seeds["counted"] & seeds["setting"].isin(several)]
    if len(seeds):
        position = seeds["setting"].map(dict(zip(facet.settings, x))).astype(float)
        ax.scatter(position + 0.12, seeds["knn_top1"], s=14, color=STUDY, alpha=0.45, zorder=3, label="seeds")
    if with_paper:
        paper = part["paper"].to_numpy(dtype=float)
        ax.plot(x, paper, "D", color=PAPER, ms=6, label="paper")
        _joined(ax, x, paper, numeric, color=PAPER, ls="--")
    _ticks(ax, facet.ticks, list(part["collapse"]))
    ax.set_xlabel(axis_title(results, [labels.x_axis(results)]))
    ax.set_ylabel(f"k-NN top-1 (%), {profile}")
    ax.set_title(facet.title or f"this study ({profile})")


def _references(ax: Axes, part: pd.DataFrame) -> None:
    """Each reference as a line across the panel where every setting shares it, else as a short
    line at each setting (a random network of each patch size)."""
    x = np.arange(len(part), dtype=float)
    for kind, style in REFERENCE_STYLE.items():
        values = part[f"{kind}_top1"].to_numpy(dtype=float)
        known = np.isfinite(values)
        if not known.any():
            continue
        label = f"{KINDS[kind]} (same k-NN)"
        if known.all() and np.allclose(values, values[0]):
            ax.axhline(values[0], lw=1.2, label=f"{label}: {values[0]:.1f} %", **style)
        else:
            ax.hlines(values[known], x[known] - 0.4, x[known] + 0.4, lw=1.6, label=label, **style)


def _paper_panel(ax: Axes, results: StudyResults, rows: pd.DataFrame, facet: labels.Facet) -> None:
    x_name = labels.x_axis(results)["name"]
    declared = [results.points[s][x_name] for s in facet.settings]
    paper = rows.loc[facet.settings, "paper"].to_numpy(dtype=float)
    x = np.arange(len(declared), dtype=float)
    ax.plot(x, paper, "D", color=PAPER, ms=6, label="paper (its own scale)")
    _joined(ax, x, paper, [labels.numeric(d) for d in declared], color=PAPER, ls="--")
    collapsed = ["collapsed" if math.isfinite(p) and p <= PAPER_COLLAPSE_MAX else "" for p in paper]
    _ticks(ax, declared, collapsed)
    ax.set_xlabel(axis_title(results, [labels.x_axis(results)]))
    ax.set_ylabel("k-NN top-1 (%), the paper")
    ax.set_title("the paper")


def _joined(ax: Axes, x: np.ndarray, y: np.ndarray, numeric: list[bool], **style) -> None:
    """Lines between neighbouring points that are both numeric and both measured."""
    for i in range(len(x) - 1):
        if numeric[i] and numeric[i + 1] and np.isfinite(y[i]) and np.isfinite(y[i + 1]):
            ax.plot(x[i:i + 2], y[i:i + 2], lw=1.4, **style)


def _ticks(ax: Axes, ticks: list[str], collapse: list[str]) -> None:
    """Tick labels, collapsed values in red with their mark under the value."""
    texts = [two_lines(t) + (f"\n{c}" if c else "") for t, c in zip(ticks, collapse)]
    ax.set_xticks(np.arange(len(ticks)), texts)
    ax.set_xlim(-0.5, len(ticks) - 0.5)
    for label, mark in zip(ax.get_xticklabels(), collapse):
        if mark:
            label.set_color(COLLAPSED)
