"""A report from a real tiny study, and its HTML page rendered by a real headless browser.

The shipped ``collapse`` study is run once per test session, shrunk to seconds per run (the
micro runs of tests/helpers.py, 2 epochs of 2 iterations, a small k-NN) with 2 seeds so its table has
intervals; the debug cluster runs the 6 trainings in one process, which saves the per-job torch
start-up (about 10 s a run) while keeping the engine's real ledger and sacred recording.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from matplotlib.image import imread

from reports.build import build_report
from reports.load import curves, load_study
from studies.ledger import open_storage
from tests.helpers import MICRO_SET, set_args

REPO = Path(__file__).resolve().parents[2]
# the micro runs of the study tests, for 2 epochs, evaluated after each, with a head narrower than
# micro's so that the report is seen to name an override of the profile
SHRINK = {**MICRO_SET, "epochs": 2, "head.out_dim": 32, "eval.every_epochs": 1}
VARIANTS = ["centering only", "sharpening only", "both"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]


@pytest.fixture(scope="session")
def collapse_study(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("reports_study") / "collapse"
    command = [sys.executable, "-m", "studies.run", "collapse", "--results", str(results), "--cluster", "debug",
               "--seeds", "2", *set_args(SHRINK)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return results


@pytest.fixture(scope="session")
def collapse_report(collapse_study) -> Path:
    return build_report("collapse", collapse_study)


def test_a_finished_study_writes_its_report_unasked(collapse_study):
    """The fixture only ran ``studies.run``: the page must already be there."""
    page = collapse_study / "report" / "report.html"
    assert page.exists() and "<table" in page.read_text()
    assert (collapse_study / "report" / "report.md").exists()


def test_report_of_a_real_study(collapse_study, collapse_report):
    ledger = optuna.load_study(study_name="collapse", storage=open_storage(str(collapse_study / "ledger.journal")))
    by_variant: dict[str, list[float]] = {}
    for trial in ledger.get_trials():
        by_variant.setdefault(trial.user_attrs["axes"]["variant"], []).append(trial.value)
    table = pd.read_csv(collapse_report.with_name("table.csv"))
    assert list(table["setting"]) == VARIANTS and list(table["n"]) == [2, 2, 2]
    for _, row in table.iterrows():
        values = by_variant[row["setting"]]
        assert row["top1_mean"] == pytest.approx(sum(values) / 2)
        assert row["top1_std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
        half = 12.7062 * row["top1_std"] / 2 ** 0.5  # t(0.975, 1 degree of freedom)
        assert row["top1_ci_high"] - row["top1_mean"] == pytest.approx(half, rel=1e-5)
    assert list(table["expected_collapse"]) == ["uniform", "one dimension", "none"]
    text = collapse_report.with_name("report.md").read_text()
    assert "complete: 6 of 6 runs done" in text
    assert "head.out_dim 1024 -> 32" in text  # the shrinking overrides are reported as what was run
    assert "](../sacred/" in text  # each attempt links to its sacred folder
    for stem in ("knn", "entropy_kl", "runs"):
        assert (collapse_report.parent / "plots" / f"{stem}.svg").stat().st_size > 1000


def test_frames_of_a_real_study(collapse_study):
    results = load_study(collapse_study)
    runs = results.runs
    assert len(runs) == 6 and runs["counted"].all() and (runs["cpu_hours"] > 0).all()
    assert set(runs["config.loss.centering"]) == {True, False}  # the settings that vary become columns
    assert runs["git_commit"].notna().all() == (subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                                                               capture_output=True).returncode == 0)
    data = curves(results)
    kl = data[(data["kind"] == "iteration") & (data["metric"] == "kl")]
    assert kl.groupby("run_key")["epoch"].max().eq(2.0).all()  # log_every = 1: every iteration, at its epoch
    knn = data[(data["kind"] == "knn") & (data["metric"] == "top1")]
    assert knn.groupby("run_key")["step"].apply(list).tolist() == [[1, 2]] * 6  # eval.every_epochs = 1


def test_report_page_renders_in_headless_chromium(collapse_report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    page = collapse_report.read_text()
    images = [part.split('"', 1)[0] for part in page.split('<img src="')[1:]]
    assert len(images) == 4 and all(src.startswith("data:image/png;base64,") for src in images)
    shot = tmp_path / "report.png"
    done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           f"--screenshot={shot}", "--window-size=1200,2000", collapse_report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CONSOLE" not in done.stderr, done.stderr  # no script or page error reported by the page
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1200, 2000)
    assert imread(shot).std() > 0.05  # a rendered page, not a blank one
