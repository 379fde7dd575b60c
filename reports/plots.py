"""The report's figures, drawn with seaborn: PNG for the page, SVG for a paper.

Three figures per study, each a function of the loaded results:

* ``knn_figure``: k-NN top-1 against the axis value, this study (mean, 95 % interval, each seed
  as a dot) beside the paper's numbers as a second series;
* ``entropy_kl_figure``: target entropy h(P_t) and KL(P_t || P_s) against epochs, one line per
  setting (mean over seeds, band: range over seeds), ln K and the collapse threshold drawn in:
  the paper's Fig. 7 for the collapse study, the same diagnosis for every other one;
* ``runs_figure``: small multiples, one panel per run (settings down, seeds across): the loss
  over training and the k-NN accuracy at each evaluation.

Figures are ``matplotlib.figure.Figure`` objects, never pyplot's global state, so building a
report from a notebook or a long-running launcher leaks nothing and changes no backend. Colours
follow the declared order of the settings in every figure; SVGs carry no date, so a rebuild of
unchanged results gives identical files.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Iterator

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from core.collapse import CollapseRule
from reports.load import StudyResults

DPI = 150


@contextlib.contextmanager
def style() -> Iterator[None]:
    """seaborn's paper look, scoped to the figures drawn inside (no global state is changed)."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.25),
          "svg.hashsalt": "dino-reports", "axes.titleweight": "bold", "legend.frameon": False}
    with matplotlib.rc_context(rc):
        yield


def palette(results: StudyResults) -> dict[str, tuple[float, float, float]]:
    """Setting -> colour, in declared order (colour-blind safe)."""
    settings = results.settings
    return dict(zip(settings, sns.color_palette("colorblind", len(settings))))


METADATA = {"png": {"Software": None}, "svg": {"Date": None}}  # nothing that changes between builds


def save(fig: Figure, folder: Path, stem: str, formats: tuple[str, ...] = ("png", "svg")) -> dict[str, Path]:
    """Write ``<stem>.<format>`` for each format (each through a temporary file and a rename,
    so a page being read never sees half an image); returns the paths by format."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in formats:
        metadata = METADATA[fmt]
        path = folder / f"{stem}.{fmt}"
        partial = folder / f".{stem}.{os.getpid()}.partial.{fmt}"
        fig.savefig(partial, format=fmt, dpi=DPI, bbox_inches="tight", metadata=metadata)
        partial.replace(path)
        paths[fmt] = path
    return paths


def axis_title(results: StudyResults) -> str:
    """"tau_t (loss.teacher_temp)": the axes' names with the config keys they set."""
    return " × ".join(f"{a['name']} ({a['key']})" if a["key"] else a["name"] for a in results.axes)


def knn_figure(results: StudyResults, table: pd.DataFrame) -> Figure:
    settings = results.settings
    fig = Figure(figsize=(max(5.0, 1.1 * len(settings) + 2.5), 4.2))
    ax = fig.subplots()
    x = np.arange(len(settings))
    done = table["n"] > 0
    low = (table["top1_mean"] - table["top1_ci_low"]).fillna(0)
    high = (table["top1_ci_high"] - table["top1_mean"]).fillna(0)
    ax.errorbar(x[done], table.loc[done, "top1_mean"], yerr=[low[done], high[done]], fmt="o-", color="C0",
                capsize=4, lw=1.5, ms=7, label=f"this study ({results.plan['profile']}): mean, 95 % CI")
    seeds = results.latest()
    seeds = seeds[seeds["counted"]]
    if len(seeds):
        position = seeds["setting"].map(dict(zip(settings, x))).astype(float)
        ax.scatter(position + 0.08, seeds["knn_top1"], s=14, color="C0", alpha=0.45, zorder=3, label="seeds")
    if table["paper"].notna().any():
        reference = (results.plan.get("reference") or "").split(",")[0] or "paper"
        ax.plot(x, table["paper"], "D--", color="C3", ms=6, lw=1.2, label=f"paper: {reference}")
    for xi, (_, row) in zip(x, table.iterrows()):
        if row["collapse"]:
            ax.annotate(row["collapse"], (xi, row["top1_mean"]), textcoords="offset points", xytext=(0, 10),
                        ha="center", fontsize=8, color="C3")
    if not done.any():
        progress = results.progress()
        ax.text(0.5, 0.5, "every run failed" if progress["failed"] == progress["total"] else "no finished run yet",
                transform=ax.transAxes, ha="center", color="grey")
    ax.set_xticks(x, settings)
    ax.set_xlim(-0.5, len(settings) - 0.5)
    ax.set_xlabel(axis_title(results))
    ax.set_ylabel("k-NN top-1 accuracy (%)")
    ax.set_title(f"{results.name}: k-NN top-1 per {' × '.join(a['name'] for a in results.axes)}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8)
    return fig


def entropy_kl_figure(results: StudyResults, curves: pd.DataFrame, rule: CollapseRule) -> Figure:
    fig = Figure(figsize=(11, 4.4))
    axes = fig.subplots(1, 2, sharex=True)
    data = curves[(curves["kind"] == "iteration") & curves["setting"].notna()]
    colours = palette(results)
    order = [s for s in results.settings if s in set(data["setting"])]
    for ax, metric, label in ((axes[0], "target_entropy", "target entropy h(P_t) (nats)"),
                              (axes[1], "kl", "KL(P_t ‖ P_s) (nats)")):
        part = data[data["metric"] == metric]
        if len(part):
            sns.lineplot(part, x="epoch", y="value", hue="setting", hue_order=order, palette=colours,
                         estimator="mean", errorbar=("pi", 100), ax=ax, legend=False, lw=1.4)
        else:
            ax.text(0.5, 0.5, "no iteration logged yet", transform=ax.transAxes, ha="center", color="grey")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
    ln_ks = sorted(results.latest()["ln_k"].dropna().unique())
    for ln_k in ln_ks:
        axes[0].axhline(ln_k, color="0.3", ls="--", lw=1)
        axes[0].annotate(f"ln K = {ln_k:.2f} (K = {round(math.exp(ln_k))})", (0.01, ln_k),
                         xycoords=("axes fraction", "data"), textcoords="offset points", xytext=(0, 3), fontsize=8,
                         color="0.3")
    axes[0].set_ylim(0, max([axes[0].get_ylim()[1], *(1.08 * k for k in ln_ks)]))
    axes[1].set_ylim(bottom=0)
    axes[1].axhline(rule.kl_max, color="C3", ls=":", lw=1)
    axes[1].annotate(f"collapse threshold ({rule.kl_max:g} nats)", (0.99, rule.kl_max), ha="right",
                     xycoords=("axes fraction", "data"), textcoords="offset points", xytext=(0, 3), fontsize=8,
                     color="C3")
    axes[0].set_title("target entropy")
    axes[1].set_title("KL divergence, teacher to student")
    if order:
        handles = [Line2D([], [], color=colours[s], lw=2) for s in order]
        fig.legend(handles, order, title=axis_title(results), loc="lower center", ncol=min(len(order), 6),
                   bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"{results.name}: h(P_t) and KL over training (mean over seeds; band: range)", fontweight="bold")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def runs_figure(results: StudyResults, curves: pd.DataFrame) -> Figure:
    settings = results.settings
    planned = pd.DataFrame(results.plan["runs"])
    seeds = sorted(planned["seed"].unique())
    latest = results.latest().set_index(["setting", "seed"])
    fig = Figure(figsize=(2.9 * len(seeds) + 1.2, 2.2 * len(settings) + 1.0))
    grid = np.atleast_2d(fig.subplots(len(settings), len(seeds), sharex=True, sharey=True, squeeze=False))
    loss = curves[(curves["kind"] == "iteration") & (curves["metric"] == "loss")]
    knn = curves[(curves["kind"] == "knn") & (curves["metric"] == "top1")]
    knn_range = (max(0.0, knn["value"].min() - 5), min(100.0, knn["value"].max() + 5)) if len(knn) else (0, 100)
    colours = palette(results)
    for i, setting in enumerate(settings):
        for j, seed in enumerate(seeds):
            ax = grid[i, j]
            key = (setting, seed)
            state = latest.loc[key, "state"] if key in latest.index else "missing"
            run_key = latest.loc[key, "run_key"] if key in latest.index else None
            ax.set_title(f"{setting} · seed {seed}" + ("" if state == "done" else f" ({state})"), fontsize=9)
            mine = loss[loss["run_key"] == run_key]
            ax.plot(mine["epoch"], mine["value"], color=colours[setting], lw=1.1)
            twin = ax.twinx()
            points = knn[knn["run_key"] == run_key]
            twin.plot(points["epoch"], points["value"], "s--", color="0.25", ms=4, lw=0.8)
            twin.set_ylim(*knn_range)
            twin.grid(False)
            if j < len(seeds) - 1:
                twin.tick_params(axis="y", right=False, labelright=False)
            else:
                twin.set_ylabel("k-NN top-1 (%)")
            if not len(mine):
                ax.text(0.5, 0.5, "no iteration logged" if run_key else "not run yet", transform=ax.transAxes,
                        ha="center", va="center", color="grey", fontsize=8)
        grid[i, 0].set_ylabel("loss (nats)")
    for ax in grid[-1]:
        ax.set_xlabel("epoch")
    legend = [Line2D([], [], color="0.5", lw=1.5, label="loss (left axis)"),
              Line2D([], [], color="0.25", ls="--", marker="s", ms=4, label="k-NN top-1 (right axis)")]
    fig.legend(handles=legend, loc="lower center", ncol=2, fontsize=9)
    fig.suptitle(f"{results.name}: every run, loss and k-NN over training", fontweight="bold")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
