"""Collapsed runs that stopped early (core.early_stop) in the reports: where they stopped, and the
hours their stop saved, per setting, per study and in the summary. First a hand-made results folder
(tests/reports/by_hand.py: every epoch 10 s, 0.5 CPU-hours over 900 s of wall-clock time, so 2 CPUs),
whose expected values are worked out by hand; then a real micro study, launched, retried and
reported, in which the centering-only arm collapses to uniform and stops.
"""
from __future__ import annotations

import pandas as pd
import pytest
from optuna.trial import TrialState

from reports import build, tables
from reports.load import load_study
from studies import plan, spec
from studies.run import main
from tests.helpers import SLOW_EPOCHS, checkpoint_epoch, epoch_steps, trials
from tests.reports.by_hand import baselines_by_hand, write_results  # noqa: F401 (an autouse fixture)

VARIANT = {"name": "variant", "key": None, "labels": ["centering only", "both"], "paper": None,
           "set": {"centering only": {"loss.sharpening": False}, "both": {}}}
UNIFORM = {"h": 4.15, "kl": 0.01, "collapse": "uniform"}  # h >= 0.98 ln 64 = 4.0757


def attempt(variant: str, seed: int, last: int, **extra) -> dict:
    return {"labels": {"variant": variant}, "seed": seed, "state": "done", "top1": 50.0 + seed, "top5": 90.0,
            "epochs": (1, last), **extra}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """6 epochs planned: centering only seed 0 stopped at epoch 2, seed 1 at 3, seed 2 collapsed at
    the end without stopping; "both" trained its 6 epochs."""
    return write_results(tmp_path_factory.mktemp("stopped") / "stops", "stops", [VARIANT], [0, 1, 2], [
        attempt("centering only", 0, 2, result={"stopped_epoch": 2}, **UNIFORM),
        attempt("centering only", 1, 3, result={"stopped_epoch": 3}, **UNIFORM),
        attempt("centering only", 2, 6, **UNIFORM),
        *(attempt("both", seed, 6) for seed in (0, 1, 2))], base={"epochs": 6})


def test_each_run_says_where_it_stopped_and_what_that_saved(stopped):
    runs = load_study(stopped).runs.set_index("label")
    assert runs["stopped_epoch"].tolist()[:2] == [2.0, 3.0] and runs["stopped_epoch"].iloc[2:].isna().all()
    assert runs["epochs_done"].tolist() == [2, 3, 6, 6, 6, 6]
    # 2 CPUs x 10 s per epoch x the epochs not trained (4, then 3)
    assert runs["saved_cpu_hours"].iloc[:2].tolist() == pytest.approx([2 * 10 * 4 / 3600, 2 * 10 * 3 / 3600])
    assert runs["saved_cpu_hours"].iloc[2:].isna().all() and (runs["saved_gpu_hours"].iloc[:2] == 0).all()


def test_the_table_the_verdict_and_the_summary_show_the_stops(stopped):
    results = load_study(stopped)
    table = tables.summary(results).set_index("setting")
    row = table.loc["centering only"]
    assert row["collapse"] == "stopped at epochs 2, 3 of 6: collapsed (uniform); 1 trained to the end"
    assert row["stopped_runs"] == 2 and row["saved_cpu_hours"] == pytest.approx(140 / 3600)
    assert row["verdict"] == ("collapsed (uniform) in 3 of 3 seeds, the mode the paper expects "
                              "(stopped at epochs 2, 3 of 6)")
    assert table.loc["both", "collapse"] == "" and pd.isna(table.loc["both", "saved_cpu_hours"])
    header, rows = tables.display(results, tables.summary(results))
    saved = header.index("CPU-h saved")
    assert [r[saved] for r in rows] == ["0.0389", "—", "0.0389"]  # the two settings, then the study's total
    summary = tables.combined([("stops", results, tables.summary(results))])
    assert summary.loc[0, "saved"] == pytest.approx(140 / 3600)
    _, cells = tables.combined_display(summary)
    assert cells[0][-1] == "3 CPU-h (0.0389 saved by early stops)"  # 6 attempts of 0.5 CPU-h


def test_a_study_without_stops_shows_no_saved_column(tmp_path):
    results = load_study(write_results(tmp_path / "plain", "plain", [VARIANT], [0],
                                       [attempt("centering only", 0, 6, **UNIFORM), attempt("both", 0, 6)],
                                       base={"epochs": 6}))
    header, _ = tables.display(results, tables.summary(results))
    assert "CPU-h saved" not in header and tables.summary(results).loc[0, "collapse"] == "collapsed (uniform)"
    _, cells = tables.combined_display(tables.combined([("plain", results, tables.summary(results))]))
    assert "saved" not in cells[0][-1]


def test_the_shipped_studies_stop_collapsed_runs_unless_told_not_to():
    study = spec.load("collapse")
    assert all(run.config.early_stop.enabled for run in plan.expand(study, "tiny", seeds=(0,)))
    assert plan.override_problem(study, "early_stop.enabled") is None
    off = plan.expand(study, "tiny", {"early_stop.enabled": False}, seeds=(0,))
    assert not any(run.config.early_stop.enabled for run in off)


def test_a_real_study_completes_a_stopped_run_never_retries_it_and_reports_the_stop(write_study, tmp_path):
    path = write_study("stops", axes=[{"name": "variant", "values": [
        {"label": "centering only", "set": {"loss.sharpening": False}}, {"label": "both", "set": {}}]}],
        set={"epochs": 6, **SLOW_EPOCHS, "early_stop.enabled": True, "early_stop.grace": "10%",
             "early_stop.patience": "20%"})
    results = tmp_path / "results"
    assert main([str(path), "--results", str(results)]) == 0
    done = {t.user_attrs["label"]: t for t in trials(results, "stops")}
    collapsed, healthy = done["variant=centering only seed=0"], done["variant=both seed=0"]
    assert {t.state for t in done.values()} == {TrialState.COMPLETE}
    stop = int(collapsed.user_attrs["stopped_epoch"])  # the ledger keeps numbers as floats
    assert 2 <= stop == collapsed.user_attrs["stopped_epoch"] < 6 and collapsed.user_attrs["collapse"] == "uniform"
    assert epoch_steps(collapsed) == list(range(1, stop + 1)) and checkpoint_epoch(collapsed.user_attrs["run_dir"]) == stop
    assert "stopped_epoch" not in healthy.user_attrs and epoch_steps(healthy) == [1, 2, 3, 4, 5, 6]

    assert main([str(path), "--results", str(results), "--retry-failed"]) == 0
    assert len(trials(results, "stops")) == 2  # an outcome, not a failure: nothing to retry
    text = build.build_report("stops", results).with_name("report.md").read_text()
    assert f"stopped at epoch {stop} of 6: collapsed (uniform)" in text
    saved = pd.read_csv(results / "report" / "table.csv").set_index("setting")["saved_cpu_hours"]
    assert saved["centering only"] > 0 and pd.isna(saved["both"])
