"""Which factor matters: per-factor means with their intervals, computed by hand, and PED-ANOVA's
ranking, on hand-made two-axis studies (tests/reports/by_hand.py)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from reports import build, importance
from reports.load import load_study
from tests.reports.by_hand import (CENTER_AXIS, M_AXIS, TAU_AXIS, baselines_by_hand,  # noqa: F401 (an autouse fixture)
                                   grid_results, write_results)

# tau alone sets the top-1 (70 / 60 / 50 at 0.04 / 0.05 / 0.07), whatever m and the seed
BY_TAU = {(t, m): [v, v] for t, v in (("0.04", 70.0), ("0.05", 60.0), ("0.07", 50.0)) for m in ("0.9", "0.99")}


@pytest.fixture(scope="module")
def by_tau(tmp_path_factory):
    return grid_results(tmp_path_factory.mktemp("factors") / "bytau", "bytau", [TAU_AXIS, CENTER_AXIS], BY_TAU)


def test_factor_means_and_intervals_by_hand(by_tau):
    means = importance.factor_means(load_study(by_tau)).set_index(["factor", "value"])
    # tau: 4 runs at each value, all equal: no spread, an interval of width 0
    for tau, mean in (("0.04", 70.0), ("0.05", 60.0), ("0.07", 50.0)):
        row = means.loc[("tau", tau)]
        assert (row["n"], row["mean"], row["std"], row["ci_low"], row["ci_high"]) == (4, mean, 0.0, mean, mean)
    # m: 6 runs at each value, 70 70 60 60 50 50: mean 60, s^2 = 4 * 100 / 5 = 80,
    # half-width t(0.975, 5) * sqrt(80 / 6) = 2.5706 * 3.6515 = 9.3866
    for m in ("0.9", "0.99"):
        row = means.loc[("m", m)]
        assert (row["n"], row["mean"]) == (6, 60.0)
        assert row["std"] == pytest.approx(math.sqrt(80))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((60 - 9.3866, 60 + 9.3866), abs=1e-3)
    assert list(means.index.get_level_values("factor")) == ["tau"] * 3 + ["m"] * 2  # declared order


def test_ped_anova_ranks_the_factor_that_sets_the_metric_first(by_tau):
    shares, sample = importance.ped_anova(load_study(by_tau))
    # the best 25 % of 12 runs: the 4 at tau = 0.04 (ties kept), two at each m, just as m is spread
    # over all runs: m's values are no more frequent among the best, so all the importance is tau's
    assert shares["tau"] > shares["m"]
    assert shares == pytest.approx({"tau": 1.0, "m": 0.0}, abs=1e-6)
    assert sample == "the best 25% of the runs: 4 of 12"


def test_a_weaker_factor_gets_a_smaller_share(tmp_path):
    """m moves the top-1 by 1 point, tau by 10 and 20: the best runs all have tau = 0.04, and
    only mostly m = 0.99."""
    top1 = {(t, m): [base + bump, base + bump - 0.5] for t, base in (("0.04", 70.0), ("0.05", 60.0), ("0.07", 50.0))
            for m, bump in (("0.9", 0.0), ("0.99", 1.0))}
    results = load_study(grid_results(tmp_path / "both", "both", [TAU_AXIS, CENTER_AXIS], top1))
    shares, _ = importance.ped_anova(results)
    assert shares["tau"] > shares["m"] > 0
    summary = importance.summary(results, importance.factor_means(results), shares).set_index("factor")
    assert summary.loc["tau", "effect"] == pytest.approx(20.0) and summary.loc["m", "effect"] == pytest.approx(1.0)


def test_when_the_seed_alone_sets_the_metric_no_factor_gets_importance(tmp_path):
    """Seed 0 gets 56, seed 1 gets 55 everywhere: the best runs hold every factor's values as
    often as all runs do, so every share is 0 (optuna's normalising would split a total of 0 evenly)."""
    seeded = grid_results(tmp_path / "seeded", "seeded", [TAU_AXIS, CENTER_AXIS], {k: [56.0, 55.0] for k in BY_TAU})
    assert importance.ped_anova(load_study(seeded)) == ({"tau": 0.0, "m": 0.0}, (
        "the best 25% of the runs: 6 of 12, where every factor's values are as frequent as among all"))


def test_too_few_runs_or_no_difference_say_why(tmp_path):
    distinct = grid_results(tmp_path / "few", "few", [TAU_AXIS, CENTER_AXIS],
                            {(t, m): [v + i] for i, (t, m, v) in enumerate(
                                (t, m, 60.0) for t in TAU_AXIS["labels"] for m in ("0.9", "0.99"))})
    shares, why = importance.ped_anova(load_study(distinct))  # best 25 % of 6 distinct values: 2 runs
    assert set(shares) == {"tau", "m"} and why == "the best 25% of the runs: 2 of 6"
    four = grid_results(tmp_path / "four", "four", [TAU_AXIS, CENTER_AXIS],
                        {(t, m): [60.0 + i] for i, (t, m) in enumerate(
                            (t, m) for t in ("0.04", "0.05") for m in ("0.9", "0.99"))})
    assert importance.ped_anova(load_study(four)) == ({}, (
        "not computed: the best 25% of the 4 finished runs is 1 run; PED-ANOVA needs 2 or more, 8 runs with "
        "distinct values"))
    same = grid_results(tmp_path / "same", "same", [TAU_AXIS, CENTER_AXIS], {k: [65.0, 65.0] for k in BY_TAU})
    assert importance.ped_anova(load_study(same)) == ({}, "not computed: no two finished runs differ in knn_top1 "
                                                          "(12 finished)")


def test_a_grid_with_no_finished_run_has_no_numbers_and_says_so(tmp_path):
    failed = [{"labels": {"tau": t, "m": m}, "seed": 0, "state": "failed"}
              for t in TAU_AXIS["labels"] for m in CENTER_AXIS["labels"]]
    found = importance.factors(load_study(write_results(tmp_path / "failed", "failed", [TAU_AXIS, CENTER_AXIS], [0],
                                                        failed)))
    assert list(found.means["n"]) == [0] * 5 and found.means["mean"].isna().all()
    assert found.summary["share"].isna().all() and found.sample == ("not computed: no two finished runs differ in "
                                                                    "knn_top1 (0 finished)")


def test_the_report_of_a_two_axis_study_says_which_factor_matters(by_tau):
    html = build.build_report("bytau", by_tau)
    text = html.with_name("report.md").read_text()
    assert "## Which factor matters" in text
    assert "| tau | 0.04 | 4 | 70.00 | [70.00, 70.00] |" in text
    assert "| m | 0.99 | 6 | 60.00 | [50.61, 69.39] |" in text
    assert "| tau | 20.00 | 1.00 |" in text and "| m | 0.00 | 0.00 |" in text
    assert "Which factor matters" in html.read_text()
    frame = pd.read_csv(html.with_name(importance.FILE), dtype={"value": str})
    assert list(frame["factor"]) == ["tau"] * 3 + ["m"] * 2 and list(frame["n"]) == [4, 4, 4, 6, 6]
    assert list(frame["share"]) == pytest.approx([1, 1, 1, 0, 0], abs=1e-6)


def test_a_one_axis_study_has_no_such_section(tmp_path):
    attempts = [{"labels": {"m": m}, "seed": 0, "state": "done", "top1": v, "top5": 95.0}
                for m, v in zip(M_AXIS["labels"], (70.0, 69.0, 1.0))]
    html = build.build_report("one", write_results(tmp_path / "one", "one", [M_AXIS], [0], attempts))
    assert "Which factor matters" not in html.with_name("report.md").read_text()
    assert not html.with_name(importance.FILE).exists()
