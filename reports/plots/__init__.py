"""The report's figures: PNG for the page, SVG for a paper. One module per figure, each with the
caption that says what it draws:

* ``knn``: k-NN top-1 per setting, what ran labelled beside the paper's value, with the same
  k-NN on a random network and on raw pixels drawn in; the paper's numbers beside it on their own
  axis unless the study ran at the paper's scale;
* ``training``: h(P_t), h(P_s) and KL(P_t || P_s) over training, the paper's Fig. 7 for the
  collapse study and the same diagnosis for every other one;
* ``runs``: small multiples, one panel per run: the loss over training and its k-NN;
* ``attention``: the teachers' last-layer CLS attention on fixed images, a row per arm, with
  each head's 60 % mask (the paper's Fig. 3; PNG only, as it is made of pixels).

This module holds what they share: the style, the colours, the layout of a grid's second axis
(``reports.labels.facets``) and saving. Figures are ``matplotlib.figure.Figure`` objects, never
pyplot's global state, so building a report from a notebook or a long-running launcher leaks
nothing and changes no backend. SVGs carry no date, so a rebuild of unchanged results gives
identical files.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib
import seaborn as sns
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports import labels
from reports.load import StudyResults

DPI = 150
# Paul Tol's "bright" scheme (colour-blind safe), then two of his "muted": every colour differs
# clearly from its neighbours, so adjacent axis values (0.04 and 0.06) never look alike.
COLOURS = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#332288", "#999933")
METADATA = {"png": {"Software": None}, "svg": {"Date": None}}  # nothing that changes between builds


@dataclass(frozen=True)
class Options:
    """How the training curves are drawn: ``smooth`` > 1 is a rolling mean over that many logged
    points (0 or 1: as logged); ``per_seed`` draws each seed's line instead of the mean and range."""

    smooth: int = 0
    per_seed: bool = False


@contextlib.contextmanager
def style() -> Iterator[None]:
    """seaborn's paper look, scoped to the figures drawn inside (no global state is changed)."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.25),
          "svg.hashsalt": "dino-reports", "axes.titleweight": "bold", "legend.frameon": False}
    with matplotlib.rc_context(rc):
        yield


def palette(results: StudyResults) -> dict[str, str]:
    """Setting -> colour by its place along the x axis, so a value keeps its colour in every
    panel of a grid."""
    x = labels.x_axis(results)
    return {setting: COLOURS[x["labels"].index(point[x["name"]]) % len(COLOURS)]
            for setting, point in results.points.items()}


def axis_title(results: StudyResults, axes: Sequence[dict] | None = None) -> str:
    """"tau_t (loss.teacher_temp)": the axes' names with the config keys they set."""
    return " × ".join(f"{a['name']} ({a['key']})" if a["key"] else a["name"] for a in axes or results.axes)


def two_lines(tick: str) -> str:
    """"4 (paper: 5)" as a tick: the paper's value under what ran, so ticks stay narrow."""
    return tick.replace(" (", "\n(", 1)


def figure(width: float, height: float) -> Figure:
    """A figure whose constrained layout keeps titles, ticks and the legend below from overlapping."""
    return Figure(figsize=(width, height), layout="constrained")


def legend_below(fig: Figure, axes: Sequence[Axes], ncol: int = 3, extra: Sequence[Artist] = (),
                 order: Sequence[str] = ()) -> None:
    """One legend for the figure, outside and under the panels, each label once: no label is
    drawn over a curve. ``extra``: labelled stand-ins for what no single artist shows (a line
    style); ``order``: label beginnings in the order they should be read (the others after)."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    for artist in extra:
        handles.setdefault(artist.get_label(), artist)
    rank = {text: next((i for i, start in enumerate(order) if text.startswith(start)), len(order)) for text in handles}
    texts = sorted(handles, key=rank.__getitem__)  # stable: same rank keeps the drawing order
    if texts:
        fig.legend([handles[t] for t in texts], texts, loc="outside lower center", ncol=min(ncol, len(texts)),
                   fontsize=8)


def save(fig: Figure, folder: Path, stem: str, formats: tuple[str, ...] = ("png", "svg")) -> dict[str, Path]:
    """Write ``<stem>.<format>`` for each format (each through a temporary file and a rename,
    so a page being read never sees half an image); returns the paths by format."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        partial = folder / f".{stem}.{os.getpid()}.partial.{fmt}"
        fig.savefig(partial, format=fmt, dpi=DPI, bbox_inches="tight", metadata=METADATA[fmt])
        partial.replace(path)
        paths[fmt] = path
    return paths
