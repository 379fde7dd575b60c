"""The student's k-NN beside the teacher's, from hand-made results folders (tests/reports/by_hand.py
writes them the way the studies engine does; the expected numbers are hand-computed literals,
t(0.975, 1) = 12.7062 and t(0.975, 2) = 4.3027 from a printed table).

Studies recorded before the trainer measured the student have no student numbers: their runs
read NaN, and a study none of whose runs has one shows no student column.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reports import build
from reports.load import load_study
from tests.reports.by_hand import M_AXIS, baselines_by_hand, write_results  # noqa: F401 (an autouse fixture)


def done(m: str, seed: int, top1: float, top5: float, **student) -> dict:
    return {"labels": {"m": m}, "seed": seed, "state": "done", "top1": top1, "top5": top5, **student}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """``student/``: m=0.9 has the student in all 3 seeds, m=0.99 in 2 of 3 (seed 0 was recorded
    before the change), m=0.999 in none (seed 1 still running, having logged one student k-NN,
    seed 2 missing). ``teacher_only/``: a study recorded before the change."""
    folder = tmp_path_factory.mktemp("student")
    write_results(folder / "student", "student", [M_AXIS], [0, 1, 2], [
        done("0.9", 0, 70.0, 90.0, student_top1=59.0, student_top5=80.0),
        done("0.9", 1, 72.0, 91.0, student_top1=62.0, student_top5=82.0),
        done("0.9", 2, 74.0, 95.0, student_top1=65.0, student_top5=84.0),
        done("0.99", 0, 60.0, 80.0),
        done("0.99", 1, 61.0, 82.0, student_top1=50.0, student_top5=70.0),
        done("0.99", 2, 62.0, 84.0, student_top1=51.0, student_top5=72.0),
        done("0.999", 0, 10.0, 50.0),
        {"labels": {"m": "0.999"}, "seed": 1, "state": "running", "epochs": (1, 1),
         "extra_metrics": {"knn.top1": [(1, 9.0)], "knn.student_top1": [(1, 33.0)]}},
    ])
    write_results(folder / "teacher_only", "teacher_only", [M_AXIS], [0], [
        done(m, 0, top1, 90.0) for m, top1 in (("0.9", 70.0), ("0.99", 69.0), ("0.999", 10.0))])
    return folder


@pytest.fixture(scope="module")
def report(root) -> Path:
    return build.build_report("student", root / "student")


def test_runs_read_the_student_where_recorded(root):
    runs = load_study(root / "student").runs.set_index(["setting", "seed"])
    assert runs.loc[("0.9", 1), "student_knn_top1"] == 62.0 and runs.loc[("0.9", 1), "student_knn_top5"] == 82.0
    assert math.isnan(runs.loc[("0.99", 0), "student_knn_top1"])  # recorded before the change
    running = runs.loc[("0.999", 1)]
    assert (running["knn_top1"], running["student_knn_top1"]) == (9.0, 33.0)  # the last logged, not counted
    assert not running["counted"] and math.isnan(running["student_knn_top5"])


def test_student_statistics_match_the_hand_computation(report):
    table = pd.read_csv(report.with_name("table.csv"), dtype={"setting": str}).set_index("setting")
    assert list(table["student_n"]) == [3, 2, 0] and list(table["n"]) == [3, 3, 1]
    expected = {  # mean, std, CI low, CI high, top-5
        "0.9": (62.0, 3.0, 54.5475, 69.4525, 82.0),  # 4.3027 * 3 / sqrt(3) = 7.4525
        "0.99": (50.5, 0.7071, 44.1469, 56.8531, 71.0),  # 12.7062 * 0.7071 / sqrt(2) = 6.3531
    }
    for setting, (mean, std, low, high, top5) in expected.items():
        row = table.loc[setting]
        assert row["student_top1_mean"] == pytest.approx(mean)
        assert row["student_top1_std"] == pytest.approx(std, abs=1e-4)
        assert (row["student_top1_ci_low"], row["student_top1_ci_high"]) == (pytest.approx(low, abs=1e-4),
                                                                           pytest.approx(high, abs=1e-4))
        assert row["student_top5_mean"] == pytest.approx(top5)
    assert table.loc["0.999", ["student_top1_mean", "student_top1_ci_low", "student_top5_mean"]].isna().all()
    assert table.loc["0.99", "top1_mean"] == pytest.approx(61.0)  # the teacher's over all 3 seeds


def test_student_column_beside_the_teacher_in_every_rendering(report):
    text = report.with_name("report.md").read_text()
    assert "| k-NN top-1 (%) | std | 95 % CI | top-5 (%) | student top-1 (%) | student 95 % CI | paper |" in text
    assert "| 0.9 | 3/3 | 72.00 | 2.00 | [67.03, 76.97] | 92.00 | 62.00 | [54.55, 69.45] | 69.7 |" in text
    assert "| 0.99 | 3/3 | 61.00 | 1.00 | [58.52, 63.48] | 82.00 | 50.50 (2 of 3) | [44.15, 56.85] | 69.4 |" in text
    assert "| 0.999 | 1/3 | 10.00 | — | — | 50.00 | — | — | 0.1 |" in text
    assert report.with_name("table.md").read_text() in text
    tex = report.with_name("table.tex").read_text()
    assert r"student top-1 (\%) & student 95\,\% CI" in tex
    assert r"92.00 & 62.00 $\pm$ 3.00 & [54.55, 69.45] & 69.7" in tex
    assert r"50.00 & -- & -- & 0.1" in tex
    page = report.read_text()
    assert "<th>student top-1 (%)</th><th>student 95 % CI</th>" in page
    assert "<td>50.50 (2 of 3)</td>" in page


def test_a_study_without_the_student_shows_no_student_column(root):
    html = build.build_report("teacher_only", root / "teacher_only")
    assert "student" not in html.with_name("table.md").read_text()
    assert "student" not in html.with_name("table.tex").read_text()
    table = pd.read_csv(html.with_name("table.csv"))
    assert list(table["student_n"]) == [0, 0, 0] and table["student_top1_mean"].isna().all()


def test_summary_shows_the_student_at_each_study_best_setting(root, tmp_path):
    assert build.main(["--all", "--runs", str(root)]) == 0
    summary = pd.read_csv(root / "report" / "summary.csv", dtype={"best_here": str}).set_index("study")
    best = summary.loc["student"]
    assert best["best_here"] == "0.9" and best["best_here_top1"] == pytest.approx(72.0)
    assert best["best_here_student_top1"] == pytest.approx(62.0)
    assert best["best_here_student_ci"] == pytest.approx(7.4525, abs=1e-4)
    assert math.isnan(summary.loc["teacher_only", "best_here_student_top1"])
    text = (root / "report" / "summary.md").read_text()
    assert "| best here (k-NN top-1 %, ± 95 % CI) | student k-NN there (± 95 % CI) | paper's best |" in text
    assert "| 0.9: 72.00 ± 4.97 | 62.00 ± 7.45 | 0.9: 69.7 |" in text
    # teacher_only: one seed, no student; 0.99 (69.0) is within tiny's seed noise of 0.9 (70.0)
    assert "| 0.9: 70.00 (level with 0.99) | — | 0.9: 69.7 |" in text
    assert "student k-NN there" in (root / "report" / "summary.tex").read_text()
    alone = tmp_path / "runs"
    shutil.copytree(root / "teacher_only", alone / "teacher_only")
    assert build.main(["--all", "--runs", str(alone)]) == 0
    assert "student" not in (alone / "report" / "summary.md").read_text()


def test_the_linear_probe_is_a_column_where_runs_recorded_it(tmp_path):
    write_results(tmp_path / "probe", "probe", [M_AXIS], [0, 1], [
        done("0.9", 0, 70.0, 90.0, linear_top1=75.0, student_linear_top1=76.0),
        done("0.9", 1, 72.0, 91.0, linear_top1=78.0, student_linear_top1=77.0),
        done("0.99", 0, 60.0, 80.0), done("0.99", 1, 61.0, 82.0)])
    runs = load_study(tmp_path / "probe").runs.set_index(["setting", "seed"])
    assert runs.loc[("0.9", 1), "linear_top1"] == 78.0 and math.isnan(runs.loc[("0.99", 0), "linear_top1"])
    build.build_report("probe", tmp_path / "probe")
    rows = pd.read_csv(tmp_path / "probe" / "report" / "table.csv", dtype={"setting": str}).set_index("setting")
    assert rows.loc["0.9", "linear_top1_mean"] == 76.5 and rows.loc["0.9", "student_linear_top1_mean"] == 76.5
    assert math.isnan(rows.loc["0.99", "linear_top1_mean"])  # recorded before the probe existed
    text = (tmp_path / "probe" / "report" / "report.md").read_text()
    assert "linear top-1 (%)" in text and "76.50" in text
