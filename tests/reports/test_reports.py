"""Reports from hand-made results folders whose expected numbers were computed by hand.

Each folder is written the way the studies engine writes one (tests/reports/by_hand.py), so these
tests pin the numbers without training anything. The expected means, standard deviations and
t-intervals below are literals computed by hand (t quantiles from a printed table:
t(0.975, 1) = 12.7062, t(0.975, 2) = 4.3027), not by the code under test.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import pandas as pd
import pytest

from core.collapse import CollapseRule
from reports import build
from reports.load import curves, load_study
from reports.stats import summarize, t_quantile
from tests.reports.by_hand import M_AXIS, baselines_by_hand, write_results  # noqa: F401 (an autouse fixture)

@pytest.fixture(scope="module")
def momentum_study(tmp_path_factory) -> Path:
    """Three seeds per m. m=0.99: seed 1 failed once then finished, seed 2 failed (its latest
    attempt); m=0.999 collapses to uniform in 2 of 3 seeds; one attempt of an older plan."""
    def done(m, seed, top1, top5, h=2.0, kl=0.8, **extra):
        return {"labels": {"m": m}, "seed": seed, "state": "done", "top1": top1, "top5": top5, "h": h, "kl": kl,
                **extra}
    attempts = [
        done("0.9", 0, 70.0, 90.0, h=2.0, kl=0.7), done("0.9", 1, 72.0, 91.0, h=2.1, kl=0.8),
        done("0.9", 2, 74.0, 95.0, h=2.2, kl=0.9),
        done("0.99", 0, 60.0, 80.0, kl=0.5),
        {"labels": {"m": "0.99"}, "seed": 1, "state": "failed", "cpu_hours": 0.25, "epochs": (1, 2)},
        done("0.99", 1, 61.0, 82.0, kl=0.5, epochs=(2, 3),
             extra_metrics={"epoch.loss": [(3, 9.0)]}),  # epoch 3 logged twice: the later value counts
        {"labels": {"m": "0.99"}, "seed": 2, "state": "failed", "cpu_hours": 0.25, "epochs": (1, 1)},
        done("0.999", 0, 10.0, 50.0, h=4.15, kl=0.001), done("0.999", 1, 11.0, 50.0, h=4.15, kl=0.002),
        done("0.999", 2, 12.0, 50.0, h=3.9, kl=0.3),  # h < 0.98 ln K: targets not uniform
        done("0.9", 0, 99.0, 99.0, stale=True, cpu_hours=1.0),  # another config, launched earlier
    ]
    return write_results(tmp_path_factory.mktemp("reports") / "momentum", "momentum", [M_AXIS], [0, 1, 2], attempts)


@pytest.fixture(scope="module")
def momentum_report(momentum_study) -> Path:
    return build.build_report("momentum", momentum_study)


# -- statistics and the collapse rule ---------------------------------------------------------------
def test_t_quantile_matches_the_printed_table():
    table = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 9: 2.2622, 29: 2.0452, 120: 1.9799}
    for df, value in table.items():
        assert t_quantile(0.95, df) == pytest.approx(value, abs=5e-5)
    assert t_quantile(0.99, 4) == pytest.approx(4.6041, abs=5e-5)


def test_t_quantile_agrees_with_scipy_where_installed():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 7, 30, 500):
        assert t_quantile(0.95, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-12)


def test_summary_of_seeds():
    s = summarize([70.0, 72.0, 74.0])  # std 2, half-width 4.3027 * 2 / sqrt(3) = 4.9683
    assert (s.n, s.mean, s.std) == (3, 72.0, pytest.approx(2.0))
    assert (s.ci_low, s.ci_high) == (pytest.approx(67.0317, abs=1e-4), pytest.approx(76.9683, abs=1e-4))
    one = summarize([55.0, math.nan])
    assert one.n == 1 and one.mean == 55.0 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert summarize([]).n == 0


def test_collapse_rule():
    rule = CollapseRule()  # KL < 0.05; h <= 0.1 ln K one dimension; h >= 0.9 ln K uniform (ln 64 = 4.1589)
    assert rule.classify(0.2, 0.01, 64) == "one dimension"
    assert rule.classify(4.0, 0.01, 64) == "uniform"
    assert rule.classify(2.0, 0.01, 64) == "other"
    assert rule.classify(2.0, 0.05, 64) == "none"  # at the threshold: not collapsed
    assert rule.classify(math.nan, 0.01, 64) == "unknown"
    assert CollapseRule(kl_max=0.5).classify(4.0, 0.3, 64) == "uniform"
    # uniform targets (h >= 0.98 ln K = 4.0757) are collapsed whatever the KL; just below, not
    assert rule.classify(4.08, 0.9, 64) == "uniform" and rule.classify(4.07, 0.9, 64) == "none"
    assert rule.classify(0.0, 0.58, 64) == "none"  # argmax targets: h = 0 by construction, not a collapse


# -- a finished study with failed, retried and stale attempts ---------------------------------------
def test_table_numbers_match_the_hand_computation(momentum_report):
    table = pd.read_csv(momentum_report.with_name("table.csv"), dtype={"setting": str})
    assert list(table["setting"]) == ["0.9", "0.99", "0.999"]  # declared order
    expected = {
        # n, mean, std, CI low, CI high, top-5, collapse, CPU-hours (all attempts, failed ones too), verdict
        "0.9": (3, 72.0, 2.0, 67.0317, 76.9683, 92.0, None, 1.5, "agrees"),
        "0.99": (2, 60.5, 0.7071, 54.1469, 66.8531, 81.0, None, 1.5, "differs"),  # 12.7062 * 0.7071 / sqrt(2)
        "0.999": (3, 11.0, 1.0, 8.5159, 13.4841, 50.0, "collapsed (uniform) in 2 of 3", 1.5,
                  "collapsed as in the paper"),
    }
    for _, row in table.iterrows():
        n, mean, std, low, high, top5, collapse, cost, status = expected[row["setting"]]
        assert row["n"] == n and row["planned"] == 3
        assert (row["top1_mean"], row["top1_std"]) == (pytest.approx(mean), pytest.approx(std, abs=1e-4))
        assert row["top1_ci_low"] == pytest.approx(low, abs=1e-4)
        assert row["top1_ci_high"] == pytest.approx(high, abs=1e-4)
        assert row["top5_mean"] == pytest.approx(top5)
        assert (None if pd.isna(row["collapse"]) else row["collapse"]) == collapse
        assert row["cpu_hours"] == pytest.approx(cost)
        assert row["verdict_status"] == status
        assert math.isnan(row["paper_diff"])  # profile tiny is not the paper's scale
    verdicts = dict(zip(table["setting"], table["verdict"]))
    # Welch: se = sqrt(2^2 / 3 + 0.7071^2 / 2) = 1.2583, df = 1.5833^2 / (1.3333^2 / 2 + 0.25^2 / 1) = 2.64 -> 2,
    # half-width 4.3027 * 1.2583 = 5.414: -11.5 is resolved, but the paper has the two level (-0.3, within 0.5)
    assert verdicts["0.99"] == "-11.5 ± 5.4 points vs 0.9 here, -0.3 in the paper, where the two are level"
    # 0.999 has collapsed seeds: no rival; 0.99 is resolved below: the paper's best is the best here
    assert verdicts["0.9"] == "the paper's best, and the best here, +11.5 ± 5.4 points above the next, 0.99"
    assert verdicts["0.999"] == "collapsed (uniform) in 2 of 3 seeds, as did the paper's run (k-NN 0.1)"
    assert table.loc[2, "kl_mean"] == pytest.approx(0.101)  # (0.001 + 0.002 + 0.3) / 3


def test_page_says_incomplete_and_counts_every_attempt_in_the_cost(momentum_report):
    text = momentum_report.with_name("report.md").read_text()
    assert "incomplete: 8 of 9 runs done (0 running, 1 failed, 0 missing)" in text
    assert "--retry-failed" in text
    assert "| all (11 attempts) |" in text and "| 5.5 |" in text  # 3 x 1.5 + the stale attempt's 1.0
    assert "not in the current plan" in text and "superseded by a later attempt" in text
    assert "NonFiniteLossError: loss is nan at epoch 2" in text
    assert "for settings the paper has within 0.5 points" in text and "{" not in text  # every field filled in
    tex = momentum_report.with_name("table.tex").read_text()
    assert r"72.00 $\pm$ 2.00 & [67.03, 76.97]" in tex and r"\begin{tabular}" in tex
    for stem in ("knn", "entropy_kl", "runs"):
        for fmt in ("png", "svg"):
            assert (momentum_report.parent / "plots" / f"{stem}.{fmt}").stat().st_size > 1000


def test_frames_flag_attempts_and_take_the_last_value_per_step(momentum_study):
    results = load_study(momentum_study)
    runs = results.runs
    assert len(runs) == 11 and runs["planned"].sum() == 10
    retried = runs[(runs["setting"] == "0.99") & (runs["seed"] == 1)].sort_values("attempt")
    assert list(retried["state"]) == ["failed", "done"] and list(retried["superseded"]) == [True, False]
    assert list(retried["counted"]) == [False, True]
    assert runs.loc[runs["planned"], "collapsed"].sum() == 2
    assert set(runs.loc[runs["collapsed"], "collapse"]) == {"uniform"}
    data = curves(results)
    data = data[data["run_key"] == retried["run_key"].iloc[0]]
    loss = data[(data["kind"] == "epoch") & (data["metric"] == "loss")]
    assert list(loss["step"]) == [1, 2, 3]
    assert list(loss["attempt"]) == [1, 2, 2]  # epoch 2 from the retry, which resumed there
    assert loss["value"].iloc[-1] == 9.0  # the later of the two records of epoch 3
    iterations = data[(data["kind"] == "iteration") & (data["metric"] == "kl")]
    assert list(iterations["epoch"]) == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]  # (i + 1) / 2 iterations per epoch


# -- a study still running, a study with one seed ---------------------------------------------------
def test_running_study_says_incomplete_and_leaves_rows_pending(tmp_path):
    axis = {"name": "tau_t", "key": "loss.teacher_temp", "labels": ["0.04", "0.07", "0.04->0.07"],
            "paper": [69.6, 68.7, 69.7],
            "set": {"0.04": {"loss.teacher_temp": 0.04}, "0.07": {"loss.teacher_temp": 0.07},
                    "0.04->0.07": {"loss.teacher_temp": "0.04->0.07"}}}
    attempts = [{"labels": {"tau_t": "0.04"}, "seed": 0, "state": "done", "top1": 80.0, "top5": 97.0},
                {"labels": {"tau_t": "0.07"}, "seed": 0, "state": "running", "epochs": (1, 1)}]
    results = write_results(tmp_path / "tau", "tau", [axis], [0], attempts)
    html = build.build_report("tau", results)
    text = html.with_name("report.md").read_text()
    assert "incomplete: 1 of 3 runs done (1 running, 0 failed, 1 missing)" in text
    table = pd.read_csv(html.with_name("table.csv"))
    assert list(table["verdict_status"]) == ["pending", "pending", "pending"]  # the reference 0.04->0.07 is missing
    assert list(table["n"]) == [1, 0, 0]
    assert "| tau\\_t=0.07 seed=0 | 1 | running | 1/3 |" not in text  # labels are not escaped inside words
    assert "| tau_t=0.07 seed=0 | 1 | running | 1/3 |" in text
    assert "1 attempt(s) without a recorded cost" in text


def test_one_seed_shows_no_interval_and_marks_both_collapse_modes(tmp_path):
    axis = {"name": "variant", "key": None, "labels": ["centering only", "sharpening only", "both"], "paper": None,
            "set": {"centering only": {"loss.sharpening": False}, "sharpening only": {"loss.centering": False},
                    "both": {}}}
    attempts = [{"labels": {"variant": "centering only"}, "seed": 0, "state": "done", "top1": 30.0, "top5": 60.0,
                 "h": 4.1, "kl": 0.002},
                {"labels": {"variant": "sharpening only"}, "seed": 0, "state": "done", "top1": 20.0, "top5": 55.0,
                 "h": 0.1, "kl": 0.001},
                {"labels": {"variant": "both"}, "seed": 0, "state": "done", "top1": 70.0, "top5": 95.0,
                 "h": 2.5, "kl": 0.6}]
    results = write_results(tmp_path / "fig7", "fig7", [axis], [0], attempts)
    html = build.build_report("fig7", results)
    table = pd.read_csv(html.with_name("table.csv"))
    assert table["top1_std"].isna().all() and table["top1_ci_low"].isna().all()
    assert list(table["collapse"].fillna("")) == ["collapsed (uniform)", "collapsed (one dimension)", ""]
    assert list(table["verdict_status"]) == ["collapsed as in the paper", "collapsed as in the paper", "no comparison"]
    text = html.with_name("report.md").read_text()
    assert "complete: 3 of 3 runs done" in text
    assert "| centering only | 1/1 | 30.00 | — | — |" in text


# -- command line, the combined page, the page itself -----------------------------------------------
def test_cli_all_builds_every_study_and_the_combined_table(momentum_study, tmp_path, capsys):
    root = momentum_study.parent
    assert build.main(["--all", "--runs", str(root), "--export", "csv"]) == 0
    summary = pd.read_csv(root / "report" / "summary.csv", dtype=str)
    row = summary.set_index("study").loc["momentum"]
    assert row["runs"] == "8/9" and row["best_here"] == "0.9" and row["paper_best"] == "0.9"
    assert (row["agree"], row["judged"]) == ("2", "3") and row["collapsed_here"] == "0.999"
    assert float(row["cost"]) == pytest.approx(5.5)
    assert (summary.set_index("study").loc["collapse", "runs"]) == "not run"  # a shipped study
    assert (root / "momentum" / "report" / "data" / "runs.csv").is_file()
    assert 'href="../momentum/report/report.html"' in (root / "report" / "summary.html").read_text()
    assert build.main(["momentum", "--results", str(tmp_path / "nothing")]) == 2
    assert "no study.json" in capsys.readouterr().err


def test_publish_writes_a_copy_for_git_without_html_or_links_into_run_folders(momentum_study, tmp_path, capsys):
    docs = tmp_path / "docs" / "results"
    assert build.main(["--all", "--runs", str(momentum_study.parent), "--publish", str(docs)]) == 0
    assert f"published: {docs / 'summary.md'}" in capsys.readouterr().out
    published = {p.relative_to(docs).as_posix() for p in docs.rglob("*") if p.is_file()}
    assert {"summary.md", "momentum/report.md", "momentum/table.csv", "momentum/plots/knn.png",
            "momentum/plots/entropy_kl.png"} <= published
    assert not [p for p in published if p.endswith((".html", ".svg"))]
    page = (docs / "momentum" / "report.md").read_text()
    assert "](plots/knn.png)" in page and "SVG" not in page
    assert "sacred/" not in page  # run ids, not links to run folders
    assert "(momentum/report.md)" in (docs / "summary.md").read_text()
    assert "sacred/" in (momentum_study / "report" / "report.md").read_text()  # the local report keeps its links
    # a published copy is of every study: --publish needs --all (refused with exit 2, one line)
    assert build.main(["momentum", "--results", str(momentum_study), "--publish", str(docs)]) == 2


def test_html_is_self_contained(momentum_report):
    page = momentum_report.read_text()
    sources = [part.split('"', 1)[0] for part in page.split('<img src="')[1:]]
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,iVBORw0KGgo") for s in sources)
    assert "<link" not in page and "<script" not in page


def test_two_axes_and_a_profile_mapping(tmp_path):
    """The label "100" of the epochs axis runs 2 epochs on profile tiny: the table says so."""
    epochs = {"name": "epochs", "key": "epochs", "labels": ["100", "300"], "paper": [70.9, 72.8],
              "set": {"100": {"epochs": 2}, "300": {"epochs": 6}}}
    momentum = {"name": "m", "key": "loss.center_momentum", "labels": ["0.9", "0.99"], "paper": None,
                "set": {"0.9": {"loss.center_momentum": 0.9}, "0.99": {"loss.center_momentum": 0.99}}}
    attempts = [{"labels": {"epochs": e, "m": m}, "seed": 0, "state": "done", "top1": top1, "top5": 90.0}
                for (e, m), top1 in zip(itertools.product(["100", "300"], ["0.9", "0.99"]), [60.0, 59.0, 65.0, 64.0])]
    results = write_results(tmp_path / "grid", "grid", [epochs, momentum], [0], attempts)
    html = build.build_report("grid", results)
    table = pd.read_csv(html.with_name("table.csv"))
    assert list(table["setting"]) == ["epochs=100, m=0.9", "epochs=100, m=0.99", "epochs=300, m=0.9",
                                      "epochs=300, m=0.99"]
    assert list(table["used"]) == ["epochs=2"] * 2 + ["epochs=6"] * 2
    assert list(table["label"]) == ["epochs=2 (paper: 100), m=0.9", "epochs=2 (paper: 100), m=0.99",
                                    "epochs=6 (paper: 300), m=0.9", "epochs=6 (paper: 300), m=0.99"]
    assert list(table["paper"]) == [70.9, 70.9, 72.8, 72.8]
    # m carries no paper numbers: each m is judged on its own, against its epochs=300 row (paper 72.8):
    # 60 - 65 = -5 and 59 - 64 = -5 here, one seed each: the seed noise of tiny (std 0.6, 3 seeds) gives
    # 4.3027 * 0.6 * sqrt(2) = 3.651: resolved below, as the paper's 70.9 - 72.8 = -1.9
    assert list(table["verdict_status"]) == ["agrees"] * 4
    assert list(table["verdict"]) == [
        "-5.0 ± 3.7 points vs epochs=6 (paper: 300), m=0.9 here, -1.9 in the paper",
        "-5.0 ± 3.7 points vs epochs=6 (paper: 300), m=0.99 here, -1.9 in the paper",
        "the paper's best, and the best here, +5.0 ± 3.7 points above the next, epochs=2 (paper: 100), m=0.9",
        "the paper's best, and the best here, +5.0 ± 3.7 points above the next, epochs=2 (paper: 100), m=0.99"]
    text = html.with_name("report.md").read_text()
    assert "| epochs × m | n |" in text and "| epochs=6 (paper: 300), m=0.99 | 1/1 | 64.00 |" in text
    assert "| epochs=6 (paper: 300) m=0.99 seed=0 | 1 | done | 3/6 |" in text  # the runs table too
