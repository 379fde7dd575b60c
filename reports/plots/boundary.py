"""A boundary search's probes: each run's final h(P_t) / ln K and KL(P_t || P_s) against the
searched value, coloured by its probe's verdict and numbered in the order launched, the bracket
shaded and its midpoint drawn: the two numbers the collapse rule decides on, with the rule's
lines (uniform targets at or above, a KL below: collapsed), where the verdict flips.

The x axis is the search's scale (positions on it, ticked with the values they stand for), so a
log or log(1-x) search reads with its probes equally spaced as they were chosen.
"""
from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, SymmetricalLogLocator

from core.collapse import CollapseRule
from reports.plots import COLOURS, figure, legend_below
from studies import boundary as search_engine

VERDICT_COLOURS = {search_engine.HEALTHY: COLOURS[0], search_engine.COLLAPSED: COLOURS[1]}
UNDECIDED = "0.55"  # grey: every other verdict (none, failed, unfinished, not launched)
BRACKET, RULE = "#CCBB44", "#CC3311"
PANELS = (("share", "final h(P_t) / ln K"), ("kl", "final KL(P_t || P_s) (nats)"))


def boundary_figure(found, rule: CollapseRule) -> Figure:
    """``found``: a ``reports.boundary.Search``; ``rule``: the one its verdicts were read with."""
    boundary, runs, probes = found.boundary, found.runs, found.probes
    fig = figure(9.5, 3.8)
    axes = fig.subplots(1, len(PANELS), sharex=True)
    verdict = dict(zip(probes["value"], probes["verdict"]))
    order = dict(zip(probes["value"], probes["order"]))
    positions = runs["value"].map(boundary.position)
    for ax, (column, title) in zip(axes, PANELS):
        for value, group in runs.assign(x=positions).groupby("value"):
            ax.scatter(group["x"], group[column], color=VERDICT_COLOURS.get(verdict[value], UNDECIDED), s=28, zorder=3,
                       label=verdict[value])
            top = group[column].max()
            if math.isfinite(top):
                ax.annotate(str(order[value]), (group["x"].iloc[0], top), textcoords="offset points", xytext=(0, 5),
                            ha="center", fontsize=7, color="0.3")
        if found.state.bracket:
            a, b = found.state.bracket
            ax.axvspan(boundary.position(a), boundary.position(b), color=BRACKET, alpha=0.3, lw=0, label="bracket")
            ax.axvline(boundary.position(boundary.midpoint(a, b)), color=BRACKET, ls="--", lw=1.2, label="estimate")
        ax.margins(x=0.04)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda u, _: f"{boundary.value(u):.4g}"))
        ax.set_xlabel(f"{boundary.name} ({boundary.key}), {boundary.scale} scale")
        ax.set_title(title, fontsize=10)
    axes[0].axhline(rule.uniform_targets_min, color=RULE, ls=":", lw=1.2,
                    label=f"uniform targets: collapsed at or above {rule.uniform_targets_min:g} ln K")
    axes[1].axhline(rule.kl_max, color=RULE, ls="-.", lw=1.2, label=f"collapsed below KL {rule.kl_max:g}")
    axes[1].set_yscale("symlog", linthresh=0.01)
    # 1, 2 and 5 of each decade, plainly written: KLs of healthy and collapsed runs alike often lie
    # within one decade, where powers of ten alone would leave a single tick
    axes[1].yaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=0.01, subs=(1, 2, 5)))
    axes[1].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    legend_below(fig, list(axes), ncol=4, extra=[Line2D([], [], ls="", marker="$1$", color="0.3",
                                                        label="probe order")])
    fig.suptitle(f"{boundary.name}: where runs turn from healthy to collapsed", fontweight="bold")
    return fig


def caption(found) -> str:
    return (f"Every run of the boundary search, at its {found.boundary.name} on the search's {found.boundary.scale} "
            "scale: its final target entropy as a share of ln K (left) and its final KL (right, linear below 0.01), "
            "coloured by its probe's verdict (the majority of its seeds; grey: no verdict yet) and numbered in "
            "the order the probes were launched. Shaded: the bracket, the nearest probes with different verdicts; "
            "dashed: its midpoint, the estimate.")
