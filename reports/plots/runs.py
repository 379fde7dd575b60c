"""Every run in its own panel (settings down, seeds across; with one seed, the settings in rows of
up to ``ACROSS``): what a table's mean is made of.

A run's loss is drawn over training; its k-NN too where it was evaluated more than once. A run
evaluated only at its end has one k-NN number, which a lone marker on a second axis would make
look like a curve cut short: it is written as "final" in the panel's title instead.
"""
from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from reports import labels
from reports.load import StudyResults
from reports.plots import figure, legend_below, palette

KNN = "0.25"
ACROSS = 4  # panels per row when each setting has one seed


def runs_figure(results: StudyResults, curves: pd.DataFrame) -> Figure:
    settings, names = results.settings, labels.labels(results)
    seeds = sorted({run["seed"] for run in results.plan["runs"]})
    cells = [(setting, seed) for setting in settings for seed in seeds]
    across = len(seeds) if len(seeds) > 1 else min(ACROSS, len(settings))
    down = math.ceil(len(cells) / across)
    latest = results.latest().set_index(["setting", "seed"])
    fig = figure(3.0 * across + 1.4, 2.5 * down + 1.2)
    grid = fig.subplots(down, across, sharex=True, sharey=True, squeeze=False)
    loss = curves[(curves["kind"] == "iteration") & (curves["metric"] == "loss")]
    knn = curves[(curves["kind"] == "knn") & (curves["metric"] == "top1")]
    knn_range = (max(0.0, knn["value"].min() - 5), min(100.0, knn["value"].max() + 5)) if len(knn) else (0, 100)
    colours = palette(results)
    over_training = False
    for ax in grid.flat[len(cells):]:
        ax.set_visible(False)
    for i, (ax, (setting, seed)) in enumerate(zip(grid.flat, cells)):
        key = (setting, seed)
        state = latest.loc[key, "state"] if key in latest.index else "missing"
        run_key = latest.loc[key, "run_key"] if key in latest.index else None
        points = knn[knn["run_key"] == run_key]
        title = f"{names[setting]} · seed {seed}" + ("" if state == "done" else f" ({state})")
        if len(points) == 1:
            title += f"\nfinal k-NN {points['value'].iloc[0]:.2f} %"
        ax.set_title(title, fontsize=9)
        mine = loss[loss["run_key"] == run_key]
        ax.plot(mine["epoch"], mine["value"], color=colours[setting], lw=1.1)
        if len(points) > 1:
            over_training = True
            twin = ax.twinx()
            twin.plot(points["epoch"], points["value"], "s--", color=KNN, ms=4, lw=0.8)
            twin.set_ylim(*knn_range)
            twin.grid(False)
            if i % across == across - 1 or i == len(cells) - 1:  # the right axis is named at the end of a row
                twin.set_ylabel("k-NN top-1 (%)")
            else:
                twin.tick_params(axis="y", right=False, labelright=False)
        if not len(mine):
            ax.text(0.5, 0.5, "no iteration logged" if run_key else "not run yet", transform=ax.transAxes,
                    ha="center", va="center", color="grey", fontsize=8)
    for row in grid:
        row[0].set_ylabel("loss (nats)")
    for column in range(across):  # the lowest panel of each column, which a short last row may leave above
        lowest = grid[(len(cells) - 1 - column) // across, column]
        lowest.xaxis.set_tick_params(labelbottom=True)
        lowest.set_xlabel("epoch")
    key = [Line2D([], [], color="0.5", lw=1.5, label="loss" + (" (left axis)" if over_training else ""))]
    if over_training:
        key.append(Line2D([], [], color=KNN, ls="--", marker="s", ms=4, label="k-NN top-1 over training (right axis)"))
    legend_below(fig, [], ncol=2, extra=key)
    fig.suptitle(f"{results.name}: every run, loss and k-NN over training", fontweight="bold")
    return fig


def caption(curves: pd.DataFrame) -> str:
    evaluations = curves[(curves["kind"] == "knn") & (curves["metric"] == "top1")].groupby("run_key").size()
    knn = ("its final k-NN top-1 in the panel's title" if evaluations.le(1).all() else
           "its k-NN top-1 at each evaluation on the right axis" if evaluations.gt(1).all() else
           "its k-NN top-1 at each evaluation on the right axis where it was evaluated more than once, else its "
           "final k-NN in the panel's title")
    return ("Every run, settings down and seeds across, named by what ran: the training loss per logged "
            f"iteration; {knn}.")
