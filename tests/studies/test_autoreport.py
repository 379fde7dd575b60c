"""The last job of a cluster study writes the report: ``write_report_if_finished`` on real ledgers
(a journal file and SQLite), with a builder of this module that leaves a file as its page."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from studies.autoreport import write_report_if_finished
from studies.ledger import Ledger

BUILDER = f"{__name__}:build_page"


def build_page(study: str, results_dir: Path, storage: str) -> Path:
    """A report builder as ``studies.autoreport`` calls one: the page says what it was given."""
    page = Path(results_dir) / "page.json"
    page.write_text(json.dumps({"study": study, "storage": storage}))
    return page


@pytest.fixture(params=["journal", "sqlite"])
def storage(request, tmp_path) -> str:
    return str(tmp_path / "ledger.journal") if request.param == "journal" else f"sqlite:///{tmp_path / 'ledger.db'}"


def test_only_the_job_that_ends_the_last_attempt_writes_the_report(storage, tmp_path, capsys):
    ledger = Ledger.create(storage, "s", "maximize", "knn_top1")
    other = Ledger.create(storage, "another", "maximize", "knn_top1")  # same storage, another study
    other.new_attempt({"run_key": "x"})  # running there does not keep this study's report back
    first, second = (ledger.new_attempt({"run_key": key}) for key in ("a", "b"))
    ledger.fail(first, "RuntimeError: out of memory")
    page = tmp_path / "page.json"

    job = Ledger.load(storage, "s")  # each job opens the ledger anew, as a job's process does
    write_report_if_finished(BUILDER, "s", tmp_path, storage, job)
    assert not page.exists()  # attempt b still runs

    job.complete(second, 61.0, {})
    write_report_if_finished(BUILDER, "s", tmp_path, storage, Ledger.load(storage, "s"))
    assert json.loads(page.read_text()) == {"study": "s", "storage": storage}
    assert f"report: {page}" in capsys.readouterr().out


def test_a_ledger_is_running_while_any_attempt_is(storage):
    ledger = Ledger.create(storage, "s", "maximize", "knn_top1")
    assert not ledger.any_running()  # no attempt at all
    numbers = [ledger.new_attempt({"run_key": str(i)}) for i in range(3)]
    for number in numbers:
        assert Ledger.load(storage, "s").any_running()
        ledger.complete(number, 50.0, {})
    assert not Ledger.load(storage, "s").any_running()
