"""What each run recorded of itself (its collapse verdict, the student's entropy) read back first,
and the published copy: no machine's paths or host names, one name for the code commit.
Hand-made results folders (tests/reports/by_hand.py); expected values are literals.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from core.collapse import CollapseRule
from reports import build
from reports.load import load_study
from tests.reports.by_hand import M_AXIS, baselines_by_hand, write_results  # noqa: F401 (an autouse fixture)


def done(m: str, top1: float, **extra) -> dict:
    return {"labels": {"m": m}, "seed": 0, "state": "done", "top1": top1, "top5": 95.0, **extra}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """m = 0.9 recorded "one dimension" in the ledger although its final numbers (h 2.0, KL 0.5)
    read healthy by the rule; m = 0.99 recorded "uniform" only in sacred's result; m = 0.999
    recorded nothing (an older run) and its numbers say one dimension (h 0.1, KL 0.001)."""
    return write_results(tmp_path_factory.mktemp("records") / "recorded", "recorded", [M_AXIS], [0], [
        done("0.9", 60.0, collapse="one dimension", hs=3.25),
        done("0.99", 61.0, result={"collapse": "uniform"}, hs=3.5),
        done("0.999", 20.0, h=0.1, kl=0.001)])


def test_a_run_recorded_verdict_comes_first(recorded):
    runs = load_study(recorded).runs.set_index("setting")
    assert runs["collapse"].tolist() == ["one dimension", "uniform", "one dimension"]
    assert runs["collapse_recorded"].tolist() == [True, True, False]
    # another rule than the one runs record under: every verdict computed by it (KL 0.5 and 0.001 < 0.6)
    other = load_study(recorded, rule=CollapseRule(kl_max=0.6)).runs.set_index("setting")
    assert other["collapse"].tolist() == ["other", "other", "one dimension"] and not other["collapse_recorded"].any()
    text = build.build_report("recorded", recorded).with_name("report.md").read_text()
    assert "each run's own verdict where it recorded one (2 of 3 attempts)" in text
    assert "| 0.9 | 1/1 | 60.00 | — | — | 95.00 | 69.7 | 2.000 | 3.250 | 0.500 | collapsed (one dimension) |" in text


def test_the_student_entropy_beside_the_targets(recorded):
    runs = load_study(recorded).runs.set_index("setting")
    assert runs["student_entropy"].tolist()[:2] == [3.25, 3.5] and pd.isna(runs.loc["0.999", "student_entropy"])
    table = pd.read_csv(build.build_report("recorded", recorded).with_name("table.csv"), dtype={"setting": str})
    assert table["student_entropy_mean"].tolist()[:2] == [3.25, 3.5]
    assert "| h(P_t) | h(P_s) | KL |" in (recorded / "report" / "report.md").read_text()


MACHINE = re.compile(r"/(?:tmp|root|work|home)\b|testhost")


def test_the_published_copy_names_no_machine_and_one_commit(tmp_path):
    root = tmp_path / "runs"
    results = root / "momentum"
    failed = {"labels": {"m": "0.99"}, "seed": 0, "state": "failed",
              "error": f"FileNotFoundError: {results}/runs/m=0.99 and /root/.cache/torch/x.pt are gone"}
    write_results(results, "momentum", [M_AXIS], [0], [done("0.9", 70.0), failed, done("0.999", 10.0)])
    docs = tmp_path / "docs"
    assert build.main(["--all", "--runs", str(root), "--publish", str(docs)]) == 0
    published = {p.relative_to(docs).as_posix(): p.read_text() for p in docs.rglob("*")
                 if p.is_file() and p.suffix != ".png"}
    assert {"summary.md", "momentum/report.md", "momentum/table.csv"} <= set(published)
    leaks = {name: MACHINE.findall(text) for name, text in published.items() if MACHINE.search(text)}
    assert leaks == {}
    page = published["momentum/report.md"]
    assert r"FileNotFoundError: \<results>/runs/m=0.99 and …/x.pt are gone" in page  # \< : Markdown's escape
    assert "| **data** | fashion_mnist, from the data.path of profile tiny |" in page
    assert "| **hosts** |" not in page and "| **results** |" not in page
    assert "Built " in page and "from the study's ledger and sacred records." in page
    # one name for the commit, the same on every page: its first 7 hex digits
    assert "| **code (git commit)** | c0ffee1 |" in page
    assert "Code: every study here ran at commit c0ffee1." in published["summary.md"]
    assert "c0ffee1234" not in "".join(published.values())
    local = (results / "report" / "report.md").read_text()
    assert "| **hosts** | testhost |" in local and f"| **results** | {results} |" in local  # kept where it ran
