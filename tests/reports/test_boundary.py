"""The Boundary section of a boundary study's report, from hand-made results folders
(tests/reports/by_hand.py) whose study file declares the search; expected text and numbers are
literals worked out by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import tomli_w
from matplotlib.backends.backend_agg import FigureCanvasAgg

from core.collapse import CollapseRule
from reports import boundary, build
from reports.load import load_study
from reports.plots import COLOURS
from reports.plots.boundary import boundary_figure
from tests.reports.by_hand import M_AXIS, baselines_by_hand, grid_results, write_results  # noqa: F401 (autouse)

LN_K = math.log(64)  # K = 64 in every hand-made run
UNIFORM = {"h": 0.99 * LN_K, "kl": 0.55, "collapse": "uniform"}  # uniform targets: collapsed whatever the KL
HEALTHY = {"h": 0.9 * LN_K, "kl": 0.5, "collapse": "none"}
# The probes as the search launched them: the ends, then [0.18, 0.42] in thirds, then [0.26, 0.34] in thirds
LAUNCHED = [("0.18", HEALTHY), ("0.42", UNIFORM), ("0.26", HEALTHY), ("0.34", UNIFORM), ("0.287", UNIFORM),
            ("0.313", UNIFORM)]


def boundary_results(folder: Path, launched, name: str = "tau_search", recorded: bool = False) -> Path:
    """A results folder of the probes ``launched`` (label, outcome: a done run's h, KL and
    verdict, or {"state": "failed"}), launched from a study file declaring the search; with
    ``recorded``, study.json holds the search as launches now record it and the file is gone."""
    labels = sorted((label for label, _ in launched), key=float)
    axis = {"name": "tau_t", "key": "loss.teacher_temp", "labels": labels, "paper": None,
            "set": {label: {"loss.teacher_temp": float(label)} for label in labels}}
    attempts = [{"labels": {"tau_t": label}, "seed": 0, "state": "done", "top1": 60.0 + i, "top5": 95.0, **outcome}
                for i, (label, outcome) in enumerate(launched)]
    results = write_results(folder / name, name, [axis], [0], attempts)
    study_file = folder / f"{name}.toml"
    study_file.write_text(tomli_w.dumps({"description": "by hand", "boundary": {
        "name": "tau_t", "key": "loss.teacher_temp", "low": 0.18, "high": 0.42, "tolerance": 0.03, "budget": 6}}))
    plan = {**json.loads((results / "study.json").read_text()), "file": str(study_file)}
    if recorded:
        plan["boundary"] = {"name": "tau_t", "key": "loss.teacher_temp", "low": 0.18, "high": 0.42,
                            "scale": "linear", "tolerance": 0.03, "budget": 6}
        study_file.unlink()
    (results / "study.json").write_text(json.dumps(plan))
    return results


def test_a_finished_search_reports_its_bracket_estimate_and_every_probe_in_order(tmp_path):
    page = build.build_report("tau_search", boundary_results(tmp_path, LAUNCHED)).with_name("report.md").read_text()
    section = page[page.index("## Boundary"):page.index("## k-NN accuracy")]
    # midpoint (0.26 + 0.287) / 2 = 0.2735; half the width 0.027
    assert ("tau_t turns runs from healthy at 0.26 to collapsed at 0.287: the boundary is estimated at 0.2735, "
            "the bracket's midpoint on its linear scale, within ± 0.0135 (bracket width 0.027, tolerance 0.03)."
            ) in section
    assert "Stopped: tolerance reached: bracket [0.26, 0.287], 0.027 wide, at most 0.03." in section
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [(r[0], r[1], r[2]) for r in rows] == [("| 1", "0.18", "healthy"), ("| 2", "0.42", "collapsed"),
                                                 ("| 3", "0.26", "healthy"), ("| 4", "0.34", "collapsed"),
                                                 ("| 5", "0.287", "collapsed"), ("| 6", "0.313", "collapsed")]
    assert rows[4][4:8] == ["uniform", "64.00", "0.990", "0.550"]  # its collapse, k-NN, h(P_t) / ln K, KL
    assert [r[-1] for r in rows] == [" |", " |", "bracket end |", " |", "bracket end |", " |"]
    assert "![The boundary search's probes](plots/boundary.png)" in section
    assert (tmp_path / "tau_search" / "report" / "plots" / "boundary.svg").is_file()


def test_the_search_study_json_recorded_is_reported_with_the_study_file_gone(tmp_path):
    page = build.build_report("tau_search", boundary_results(tmp_path, LAUNCHED, recorded=True))
    section = page.with_name("report.md").read_text()
    assert "the boundary is estimated at 0.2735" in section and "tolerance 0.03" in section
    # a study.json of this version records a grid study's boundary as none: no section, no file read
    results = boundary_results(tmp_path / "grid", LAUNCHED, recorded=True)
    plan = json.loads((results / "study.json").read_text())
    (results / "study.json").write_text(json.dumps({**plan, "boundary": None}))
    assert boundary.search(load_study(results)) is None


def test_the_plot_shades_the_bracket_and_colours_each_probe_by_its_verdict(tmp_path):
    found = boundary.search(load_study(boundary_results(tmp_path, LAUNCHED)))
    fig = boundary_figure(found, CollapseRule())
    FigureCanvasAgg(fig)
    entropy, kl = fig.axes[:2]
    shaded = entropy.patches[0].get_x(), entropy.patches[0].get_x() + entropy.patches[0].get_width()
    assert shaded == pytest.approx((0.26, 0.287))
    assert entropy.get_lines()[0].get_xdata()[0] == pytest.approx(0.2735)  # the estimate
    points = {round(float(c.get_offsets()[0][0]), 3): (tuple(c.get_facecolor()[0][:3]), float(c.get_offsets()[0][1]))
              for c in entropy.collections}
    assert points[0.26][1] == pytest.approx(0.9) and points[0.287][1] == pytest.approx(0.99)
    healthy, collapsed = (tuple(int(COLOURS[i][j:j + 2], 16) / 255 for j in (1, 3, 5)) for i in (0, 1))
    assert points[0.26][0] == pytest.approx(healthy) and points[0.313][0] == pytest.approx(collapsed)
    assert kl.get_yscale() == "symlog"
    fig.canvas.draw()  # KLs from 0.05 (the rule's line) to 0.55, within about a decade: 1, 2, 5 of each, not 0.1 alone
    low, high = kl.get_ylim()
    shown = [t.get_text() for t in kl.get_yticklabels() if low <= t.get_position()[1] <= high]
    assert shown == ["0.05", "0.1", "0.2", "0.5"]


def test_a_search_held_by_a_failed_probe_says_how_to_go_on(tmp_path):
    launched = [*LAUNCHED[:3], ("0.34", {"state": "failed"})]  # [0.26, 0.42] holds the failed 0.34
    found = boundary.search(load_study(boundary_results(tmp_path, launched)))
    assert found.state.bracket == (0.26, 0.42) and found.state.stop is None
    assert found.probes.set_index("label").loc["0.34", "verdict"] == "failed"
    page = build.build_report("tau_search", tmp_path / "tau_search").with_name("report.md").read_text()
    assert ("Not finished: bracket [0.26, 0.42], 0.16 wide: probe 0.34 in it failed: --retry-failed reruns it."
            in page)


def test_ends_that_agree_report_no_boundary_in_range(tmp_path):
    page = build.build_report("tau_search", boundary_results(tmp_path, [("0.18", HEALTHY), ("0.42", HEALTHY)])
                              ).with_name("report.md").read_text()
    assert "No bracket: no boundary in [0.18, 0.42]: both ends are healthy." in page
    assert "Stopped: no boundary in [0.18, 0.42]: both ends are healthy." in page


def test_another_collapse_rule_is_said_to_be_the_reports_not_the_searchs(tmp_path):
    folder = boundary_results(tmp_path, LAUNCHED)
    found = boundary.search(load_study(folder, rule=CollapseRule(kl_max=0.1)))
    assert not found.own_verdicts and found.state.bracket == (0.26, 0.287)  # the same: h decides, not KL
    page = build.build_report("tau_search", folder, rule=CollapseRule(kl_max=0.1)).with_name("report.md").read_text()
    assert "The verdicts here are this report's collapse rule's, not the runs' own that the search followed" in page


def test_a_grid_study_has_no_boundary_section(tmp_path):
    folder = grid_results(tmp_path / "grid", "grid", [M_AXIS], {("0.9",): [70.0], ("0.99",): [69.0],
                                                                ("0.999",): [1.0]})
    assert boundary.search(load_study(folder)) is None
    assert "## Boundary" not in build.build_report("grid", folder).with_name("report.md").read_text()
