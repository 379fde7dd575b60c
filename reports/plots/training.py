"""h(P_t), h(P_s) and KL(P_t || P_s) over training: the paper's Fig. 7, for every study.

The loss splits as H(P_t, P_s) = h(P_t) + KL; collapse drives KL to 0 with h(P_t) at 0 (one
dimension) or at ln K (uniform), so both are drawn with the lines that decide it: 0, ln K and the
rule's KL threshold. KL starts several nats high in the first epoch and the threshold is 0.05, so
its axis is logarithmic, linear below ``LINTHRESH`` so that 0 has a place on it. The student's
entropy h(P_s) is dashed beside the teacher's (a student-temperature sweep moves it). Where K
differs between settings, the entropies are also drawn as a share of ln K, the only scale on
which their collapse reads the same. Labels go in the legend under the figure, never over a curve.
"""
from __future__ import annotations

import math

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from core.collapse import CollapseRule
from reports import labels
from reports.load import StudyResults
from reports.plots import Options, figure, legend_below, palette

LINTHRESH = 0.01  # nats: KL below it is drawn on a linear scale
ENTROPIES = {"target_entropy": "-", "student_entropy": "--"}
ZERO, LN_K, THRESHOLD = "0.15", "0.45", "#CC3311"
LN_K_STYLE = (0, (6, 2, 1, 2))  # dash-dot: not to be read as the student's dashes


def entropy_kl_figure(results: StudyResults, curves: pd.DataFrame, rule: CollapseRule, options: Options) -> Figure:
    panels = labels.facets(results)
    x_name = labels.x_axis(results)["name"]
    data = _prepared(results, curves, options.smooth)
    latest = results.latest()
    kinds = ["nats", "share", "kl"] if latest["ln_k"].dropna().nunique() > 1 else ["nats", "kl"]
    fig = figure(5.4 * len(kinds), 3.6 * len(panels) + 1.4)
    grid = fig.subplots(len(panels), len(kinds), squeeze=False, sharex=True)
    colours = palette(results)
    for row, facet in zip(grid, panels):
        for setting, tick in zip(facet.settings, facet.ticks):
            mine, tick = data[data["setting"] == setting], f"{x_name} = {tick}"
            for ax, kind in zip(row, kinds):
                if kind == "kl":
                    _curve(ax, mine[mine["metric"] == "kl"], "value", colours[setting], "-", tick, options.per_seed)
                    continue
                for metric, ls in ENTROPIES.items():  # the student's without a band: one band per colour is read
                    _curve(ax, mine[mine["metric"] == metric], "value" if kind == "nats" else "share",
                           colours[setting], ls, tick if ls == "-" else None, options.per_seed, band=ls == "-")
        ln_ks = sorted(latest.loc[latest["setting"].isin(facet.settings), "ln_k"].dropna().unique())
        for ax, kind in zip(row, kinds):
            if not ax.lines:
                ax.text(0.5, 0.5, "no iteration logged yet", transform=ax.transAxes, ha="center", color="grey")
            _decorate(ax, kind, ln_ks, rule, facet.title)
    for ax in grid[-1]:
        ax.set_xlabel("epoch")
    styles = [Line2D([], [], color="0.3", ls=ls, label=name) for name, ls in
              (("h(P_t), the teacher's targets", "-"), ("h(P_s), the student's", "--"))
              if ls == "-" or (data["metric"] == "student_entropy").any()]
    legend_below(fig, list(grid.flat), ncol=4, extra=styles)
    spread = "each seed's line" if options.per_seed else "mean over seeds; band: range"
    spread += f"; rolling mean over {options.smooth} logged iterations" if options.smooth > 1 else ""
    fig.suptitle(f"{results.name}: entropies and KL over training ({spread})", fontweight="bold")
    return fig


def caption(results: StudyResults, rule: CollapseRule, options: Options) -> str:
    shared = results.latest()["ln_k"].dropna().nunique() <= 1
    parts = ["The teacher's target entropy h(P_t) (solid), the student's h(P_s) (dashed, where the run measured "
             "it) and KL(P_t || P_s) over training, one colour per setting: "
             + ("each seed's own line" if options.per_seed else "the mean over seeds, the band the range of h(P_t) "
                "and KL"),
             f"KL on a log scale, linear below {LINTHRESH:g} nats so that 0 has a place, with the collapse "
             f"threshold {rule.kl_max:g} nats"]
    if not shared:
        parts.append("the entropies also as a share of ln K, since K differs between settings")
    if options.smooth > 1:
        parts.append(f"every curve a rolling mean over {options.smooth} logged iterations")
    return ("; ".join(parts) + ". As in the paper's Fig. 7, collapse drives KL to 0, with h(P_t) going to 0 "
            "(one dimension) or to ln K (uniform).")


def _prepared(results: StudyResults, curves: pd.DataFrame, smooth: int) -> pd.DataFrame:
    """The iteration records of the entropies and KL, each run's smoothed if asked, with the
    entropies' ``share`` of the run's ln K."""
    data = curves[(curves["kind"] == "iteration") & curves["metric"].isin([*ENTROPIES, "kl"])
                  & curves["setting"].notna()].copy()
    if smooth > 1:
        data["value"] = data.groupby(["run_key", "metric"])["value"].transform(
            lambda v: v.rolling(smooth, min_periods=1).mean())
    ln_k = data["run_key"].map(results.latest().set_index("run_key")["ln_k"]).astype(float)
    data["share"] = data["value"] / ln_k
    return data


def _curve(ax: Axes, part: pd.DataFrame, column: str, colour: str, ls: str, label: str | None,
           per_seed: bool, band: bool = True) -> None:
    """The mean over the setting's seeds with their range as a band, or each seed's line."""
    if not len(part):
        return
    if per_seed:
        for i, (_, run) in enumerate(part.groupby("run_key")):
            ax.plot(run["epoch"], run[column], color=colour, ls=ls, lw=0.9, alpha=0.85,
                    label=label if i == 0 else None)
        return
    by_epoch = part.groupby("epoch")[column]
    mean = by_epoch.mean()
    ax.plot(mean.index, mean.to_numpy(), color=colour, ls=ls, lw=1.4, label=label)
    if band and part["run_key"].nunique() > 1:
        ax.fill_between(mean.index, by_epoch.min().to_numpy(), by_epoch.max().to_numpy(), color=colour,
                        alpha=0.18, lw=0)


def _decorate(ax: Axes, kind: str, ln_ks: list[float], rule: CollapseRule, facet: str) -> None:
    """The lines a collapse is read against, and the axis's scale and names."""
    top = float(ax.dataLim.y1) if ax.lines else 0.0  # the curves' and bands' highest point
    ax.axhline(0, color=ZERO, lw=0.9, zorder=1.5)
    prefix = f"{facet}: " if facet else ""
    if kind == "kl":
        ax.set_yscale("symlog", linthresh=LINTHRESH, linscale=0.6)
        ax.axhline(rule.kl_max, color=THRESHOLD, ls=":", lw=1.4, label=f"collapse threshold: KL < {rule.kl_max:g} nats")
        ax.set_ylim(-LINTHRESH / 4, max(1.0, 1.6 * top))
        ax.set_ylabel("KL(P_t ‖ P_s) (nats, log)")
        ax.set_title(f"{prefix}KL, teacher to student")
        return
    if kind == "share":
        ax.axhline(1.0, color=LN_K, ls=LN_K_STYLE, lw=1, label="ln K (uniform), as a share")
        ax.set_ylim(-0.04, 1.08)
        ax.set_ylabel("entropy / ln K")
        ax.set_title(f"{prefix}entropies, share of ln K")
        return
    for ln_k in ln_ks:
        ax.axhline(ln_k, color=LN_K, ls=LN_K_STYLE, lw=1, label=f"ln K = {ln_k:.2f} (K = {round(math.exp(ln_k))})")
    top = max([top, *(1.08 * k for k in ln_ks), 1.0])
    ax.set_ylim(-0.03 * top, top)
    ax.set_ylabel("entropy (nats)")
    ax.set_title(f"{prefix}h(P_t) and h(P_s)")
