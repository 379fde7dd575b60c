"""The figures, checked as matplotlib artists (panels, tick labels, lines and their data, scales,
legends), from hand-made results folders (tests/reports/by_hand.py writes them the way the studies
engine does; its stand-in for core.baselines gives a random network 54 + the patch size, raw
pixels 83.5). Expected values are literals: what ran, the paper's value, the references.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from core.collapse import CollapseRule
from reports import labels, page
from reports.load import load_study
from reports.noise import SEED_NOISE
from reports.plots import COLOURS, Options, knn, runs, training
from tests.reports.by_hand import IPE, K, baselines_by_hand, write_results  # noqa: F401 (an autouse fixture)

PATCH = {"name": "patch", "key": "backbone.patch_size", "labels": ["16", "8", "5"], "paper": [74.5, 78.3, None],
         "set": {"16": {"backbone.patch_size": 16}, "8": {"backbone.patch_size": 8}, "5": {"backbone.patch_size": 4}}}
TEACHER = {"name": "teacher", "key": "teacher.update", "labels": ["student_copy", "previous_epoch", "momentum"],
           "paper": [0.1, 66.6, 72.8], "set": {t: {"teacher.update": t} for t in ("student_copy", "previous_epoch",
                                                                                  "momentum")}}
M = {"name": "m", "key": "loss.center_momentum", "labels": ["0.9", "0.99"], "paper": None,
     "set": {"0.9": {"loss.center_momentum": 0.9}, "0.99": {"loss.center_momentum": 0.99}}}
EPOCHS = {"name": "epochs", "key": "epochs", "labels": ["100", "300"], "paper": [70.9, 72.8],
          "set": {"100": {"epochs": 2}, "300": {"epochs": 3}}}
SPIKE = [4.0, 2.0, 1.0, 0.5, 0.5, 0.5]  # KL per iteration: the first epoch's spike, then steady


def done(labels_: dict, seed: int, top1: float, **extra) -> dict:
    return {"labels": labels_, "seed": seed, "state": "done", "top1": top1, "top5": 95.0, **extra}


def drawn(folder: Path, options: Options = Options()) -> tuple[Figure, Figure, Figure]:
    """The three figures of the study in ``folder``, each on a canvas that can be drawn."""
    results = load_study(folder)
    report = page.contents(results)
    figures = (knn.knn_figure(results, report.table, report.references, SEED_NOISE.get(results.plan["profile"])),
               training.entropy_kl_figure(results, report.curves, CollapseRule(), options),
               runs.runs_figure(results, report.curves))
    for fig in figures:
        FigureCanvasAgg(fig)
    return figures


def ticks(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def joins(ax) -> list[tuple[list, list]]:
    """The lines between two neighbouring points (not the references spanning the panel)."""
    return [(list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()
            if line.get_linestyle() in ("-", "--") and len(line.get_xdata()) == 2
            and line.get_transform() == ax.transData]


@pytest.fixture(scope="module")
def patch_study(tmp_path_factory) -> Path:
    """patch 16 / 8 / 5, the last run at 4 (tiny's mapping), one seed each."""
    folder = tmp_path_factory.mktemp("plots") / "patch"
    attempts = [done({"patch": p}, 0, top1) for p, top1 in (("16", 75.0), ("8", 69.0), ("5", 63.0))]
    return write_results(folder, "patch", [PATCH], [0], attempts)


def test_values_are_labelled_as_they_ran_with_the_paper_beside(patch_study):
    results = load_study(patch_study)
    assert labels.labels(results) == {"16": "16", "8": "8", "5": "4 (paper: 5)"}
    figure, _, runs_figure = drawn(patch_study)
    study, paper = figure.axes
    assert ticks(study) == ["16", "8", "4\n(paper: 5)"]
    assert ticks(paper) == ["16", "8", "5"]  # the paper's panel speaks of the paper's values
    assert [ax.get_title(loc="center") for ax in runs_figure.axes] == [
        "16 · seed 0\nfinal k-NN 75.00 %", "8 · seed 0\nfinal k-NN 69.00 %",
        "4 (paper: 5) · seed 0\nfinal k-NN 63.00 %"]


def test_the_paper_has_its_own_axis_below_the_paper_scale(patch_study):
    study, paper = drawn(patch_study)[0].axes
    assert study.get_ylabel() == "k-NN top-1 (%), tiny" and paper.get_ylabel() == "k-NN top-1 (%), the paper"
    assert not study.get_shared_y_axes().joined(study, paper)
    paper_points = [list(line.get_ydata()) for line in paper.get_lines() if line.get_marker() == "D"]
    assert len(paper_points) == 1 and paper_points[0][:2] == [74.5, 78.3] and math.isnan(paper_points[0][2])
    assert not [line for line in study.get_lines() if line.get_marker() == "D"]  # none of them on the study's axis
    # numeric values are joined between neighbours: 16-8-4 here, 16-8 in the paper (no number for 5)
    assert joins(study) == [([0.0, 1.0], [75.0, 69.0]), ([1.0, 2.0], [69.0, 63.0])]
    assert joins(paper) == [([0.0, 1.0], [74.5, 78.3])]


def test_references_are_drawn_per_config(patch_study):
    study = drawn(patch_study)[0].axes[0]
    pixels = [line for line in study.get_lines() if line.get_label().startswith("raw pixels")]
    assert len(pixels) == 1 and list(pixels[0].get_ydata()) == [83.5, 83.5]  # one line: every patch shares it
    assert pixels[0].get_label() == "raw pixels (same k-NN): 83.5 %"
    (random,) = [c for c in study.collections if isinstance(c, LineCollection)
                 and c.get_label() == "a randomly initialised network (same k-NN)"]
    # one short line per patch size: 54 + 16, 54 + 8, 54 + 4 from the stand-in, at x = 0, 1, 2 +- 0.4
    assert [tuple(np.round(seg[:, 1], 6)) for seg in random.get_segments()] == [(70.0, 70.0), (62.0, 62.0),
                                                                               (58.0, 58.0)]
    assert [tuple(np.round(seg[:, 0], 6)) for seg in random.get_segments()] == [(-0.4, 0.4), (0.6, 1.4), (1.6, 2.4)]
    # one seed: the bar is the seed noise of tiny, 4.3027 x 0.6 = 2.58 each way
    (segments,) = [c.get_segments() for c in study.collections if c.get_label() == "_nolegend_"]
    assert [round(float(s[1, 1] - s[0, 1]), 3) for s in segments] == [5.163] * 3


def lab(colour: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB colour, for colour differences as the eye sees them."""
    linear = [((v + 0.055) / 1.055) ** 2.4 if v > 0.04045 else v / 12.92 for v in to_rgb(colour)]
    x = (0.4124 * linear[0] + 0.3576 * linear[1] + 0.1805 * linear[2]) / 0.95047
    y = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    z = (0.0193 * linear[0] + 0.1192 * linear[1] + 0.9505 * linear[2]) / 1.08883
    f = [t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116 for t in (x, y, z)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def test_neighbouring_values_get_distinguishable_colours():
    """Values one or two apart (0.04 beside 0.06 and 0.04->0.07) differ by a Delta E of 45 or more;
    seaborn's colorblind palette had 26 between its orange and vermillion."""
    colours = [lab(c) for c in COLOURS]
    for gap in (1, 2):
        assert min(math.dist(a, b) for a, b in zip(colours, colours[gap:])) > 45


def test_categorical_values_are_never_joined(tmp_path):
    folder = write_results(tmp_path / "teacher", "teacher", [TEACHER], [0],
                           [done({"teacher": t}, 0, v) for t, v in (("student_copy", 55.0), ("previous_epoch", 68.0),
                                                                    ("momentum", 70.0))])
    study, paper = drawn(folder)[0].axes
    assert joins(study) == [] and joins(paper) == []
    assert ticks(paper) == ["student_copy\ncollapsed", "previous_epoch", "momentum"]


def test_at_the_paper_scale_the_paper_shares_the_axis(tmp_path):
    folder = write_results(tmp_path / "scale", "scale", [TEACHER], [0],
                           [done({"teacher": t}, 0, v) for t, v in (("student_copy", 0.2), ("previous_epoch", 66.0),
                                                                    ("momentum", 72.0))], profile="vits16_imagenet")
    (study,) = drawn(folder)[0].axes
    (paper,) = [line for line in study.get_lines() if line.get_label() == "paper"]
    assert list(paper.get_ydata()) == [0.1, 66.6, 72.8]


def test_a_second_axis_gets_a_panel_per_value(tmp_path):
    attempts = [done({"epochs": e, "m": m}, 0, v, epochs=(1, {"100": 2, "300": 3}[e]))
                for (e, m), v in zip(itertools.product(["100", "300"], ["0.9", "0.99"]), [60.0, 59.0, 65.0, 64.0])]
    folder = write_results(tmp_path / "grid", "grid", [EPOCHS, M], [0], attempts)
    knn_figure, curves_figure, _ = drawn(folder)
    first, second, paper = knn_figure.axes
    assert (first.get_title(), second.get_title(), paper.get_title()) == ("m=0.9", "m=0.99", "the paper")
    assert ticks(first) == ["2\n(paper: 100)", "3\n(paper: 300)"] and ticks(paper) == ["100", "300"]
    assert joins(first) == [([0.0, 1.0], [60.0, 65.0])] and joins(second) == [([0.0, 1.0], [59.0, 64.0])]
    assert [ax.get_title() for ax in curves_figure.axes] == [
        "m=0.9: h(P_t) and h(P_s)", "m=0.9: KL, teacher to student",
        "m=0.99: h(P_t) and h(P_s)", "m=0.99: KL, teacher to student"]


@pytest.fixture(scope="module")
def spiking(tmp_path_factory) -> Path:
    """m = 0.9 and 0.99, two seeds: KL spikes in the first epoch (``SPIKE``); h(P_s) is logged."""
    kl = {"iteration.kl": list(enumerate(SPIKE))}
    attempts = [done({"m": m}, seed, 70.0 + seed, h=2.0, hs=2.5, kl=0.5, extra_metrics=kl)
                for m in ("0.9", "0.99") for seed in (0, 1)]
    return write_results(tmp_path_factory.mktemp("plots") / "spiking", "spiking", [M], [0, 1], attempts)


def test_kl_is_on_a_log_scale_with_zero_and_the_threshold_in_sight(spiking):
    figure = drawn(spiking)[1]
    entropy, kl = figure.axes
    assert kl.get_yscale() == "symlog" and entropy.get_yscale() == "linear"
    for ax in (entropy, kl):
        zero = [line for line in ax.get_lines() if list(line.get_ydata()) == [0, 0]]
        assert len(zero) == 1 and ax.get_ylim()[0] < 0  # the line at 0 is inside the frame, not on its edge
    assert [line.get_label() for line in kl.get_lines() if list(line.get_ydata()) == [0.05, 0.05]] == [
        "collapse threshold: KL < 0.05 nats"]
    (curve,) = [line for line in kl.get_lines() if line.get_label() == "m = 0.9"]
    assert list(curve.get_ydata()) == SPIKE and kl.get_ylim()[1] >= 4.0  # the spike fits, the threshold too
    lnk = [line for line in entropy.get_lines() if line.get_label() == "ln K = 4.16 (K = 64)"]
    assert len(lnk) == 1 and lnk[0].get_ydata()[0] == pytest.approx(math.log(K))


def test_student_entropy_is_dashed_beside_the_targets(spiking):
    entropy = drawn(spiking)[1].axes[0]
    curves = [line for line in entropy.get_lines() if len(line.get_xdata()) == 3 * IPE]
    assert sorted((line.get_linestyle(), line.get_ydata()[0]) for line in curves) == [
        ("-", 2.0), ("-", 2.0), ("--", 2.5), ("--", 2.5)]  # one solid h(P_t) and one dashed h(P_s) per setting
    colours = {line.get_color() for line in curves if line.get_linestyle() == "-"}
    assert colours == {COLOURS[0], COLOURS[1]}


def test_labels_stay_off_the_curves_in_a_legend_under_the_panels(spiking):
    for figure in drawn(spiking):
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        (legend,) = figure.legends
        below = legend.get_window_extent(renderer)
        for ax in figure.axes:
            assert not ax.texts  # no annotation drawn inside a panel that has curves
            assert not below.overlaps(ax.get_tightbbox(renderer))


def test_smoothing_and_per_seed_lines(spiking):
    kl = drawn(spiking, Options(smooth=2))[1].axes[1]
    (curve,) = [line for line in kl.get_lines() if line.get_label() == "m = 0.9"]
    assert list(curve.get_ydata()) == [4.0, 3.0, 1.5, 0.75, 0.5, 0.5]  # rolling mean of 2: (4 + 2) / 2, ...
    kl = drawn(spiking, Options(per_seed=True))[1].axes[1]
    assert len([line for line in kl.get_lines() if len(line.get_xdata()) == 3 * IPE]) == 4  # 2 settings x 2 seeds
    results = load_study(spiking)
    assert "every curve a rolling mean over 2 logged iterations" in training.caption(results, CollapseRule(),
                                                                                     Options(smooth=2))
    assert "each seed's own line" in training.caption(results, CollapseRule(), Options(per_seed=True))


def test_entropies_also_as_a_share_of_ln_k_where_k_differs(tmp_path):
    axis = {"name": "K", "key": "head.out_dim", "labels": ["64", "256"], "paper": None,
            "set": {"64": {"head.out_dim": 64}, "256": {"head.out_dim": 256}}}
    folder = write_results(tmp_path / "k", "k", [axis], [0], [done({"K": "64"}, 0, 70.0, h=2.0),
                                                              done({"K": "256"}, 0, 71.0, h=2.0)])
    nats, share, kl = drawn(folder)[1].axes
    assert share.get_ylabel() == "entropy / ln K"
    values = sorted(round(line.get_ydata()[0], 4) for line in share.get_lines() if len(line.get_xdata()) == 3 * IPE)
    assert values == [0.3607, 0.4809]  # 2 / ln 256 = 2 / 5.5452, 2 / ln 64 = 2 / 4.1589
    assert sorted(line.get_label() for line in nats.get_lines() if line.get_label().startswith("ln K")) == [
        "ln K = 4.16 (K = 64)", "ln K = 5.55 (K = 256)"]


def test_knn_over_training_where_evaluated_more_than_once(tmp_path):
    evaluated = {"knn.top1": [(1, 60.0), (2, 65.0)]}  # and the final 70.0 at epoch 3
    folder = write_results(tmp_path / "evals", "evals", [M], [0], [done({"m": "0.9"}, 0, 70.0, extra_metrics=evaluated),
                                                                   done({"m": "0.99"}, 0, 68.0)])
    figure = drawn(folder)[2]
    first, second, twin = figure.axes  # one twin: only the run evaluated three times
    assert first.get_title() == "0.9 · seed 0" and second.get_title() == "0.99 · seed 0\nfinal k-NN 68.00 %"
    (points,) = twin.get_lines()
    assert list(points.get_xdata()) == [1, 2, 3] and list(points.get_ydata()) == [60.0, 65.0, 70.0]
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["loss (left axis)",
                                                                    "k-NN top-1 over training (right axis)"]
