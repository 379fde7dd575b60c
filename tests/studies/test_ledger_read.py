"""``--status`` on a database reads only the attributes it shows: the same ledger written to a
real SQLite file and a real journal gives the same table, and the database's partial trials hold
what the whole ones hold of those attributes."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
import tomli_w
from optuna.trial import TrialState

from core.collapse import NONE
from studies import liveness
from studies.ledger import Ledger
from studies.run import context, main, parser
from studies.status import STATUS_ATTRS
from tests.helpers import MICRO_SET

ERROR = "RuntimeError: CUDA error: an illegal memory access was encountered"


def _ended_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _ledger(url: str, name: str) -> Ledger:
    return Ledger.create(url, name, "maximize", "knn_top1")


def _attempt(ledger: Ledger, run, attempt: int, **attrs) -> int:
    """A trial as the launcher creates it, plus what the job wrote (``attrs``)."""
    number = ledger.new_attempt({"run_key": run.key, "run_id": f"{run.key}-a{attempt}", "attempt": attempt,
                                 "label": run.label, "axes": dict(run.axes), "seed": run.seed, "paper": run.paper,
                                 "cluster": "local", "run_dir": f"/results/runs/{run.name}",
                                 "sacred_dir": f"/results/sacred/{run.key}-a{attempt}",
                                 "launcher_host": "login1", "launcher_pid": 1, "launcher_pid_start": "1"})
    ledger.set_attrs(number, attrs)
    for step in (10, 20):  # rows a reader of the table does not need
        ledger.report(number, step, 50.0 + step / 10)
    return number


def _done(ledger: Ledger, run, attempt: int, value: float, collapse: str = NONE) -> None:
    number = _attempt(ledger, run, attempt, job_id=str(100 + attempt))
    ledger.complete(number, value, {"knn_top1": value, "loss": 3.2, "collapse": collapse, "wall_seconds": 60.0})


def _failed(ledger: Ledger, run, attempt: int) -> None:
    ledger.fail(_attempt(ledger, run, attempt, job_id=str(200 + attempt)), ERROR)


def write_grid_ledger(url: str, name: str, runs, heartbeat) -> None:
    """One run in each state ``--status`` tells apart, in the order the runs are planned."""
    me = liveness.owner_attrs("job", os.getpid())
    ledger = _ledger(url, name)
    _done(ledger, runs[0], 1, 61.25)
    _failed(ledger, runs[1], 1)  # retried: failed, then done
    _done(ledger, runs[1], 2, 62.5)
    _failed(ledger, runs[2], 1)
    _attempt(ledger, runs[3], 1, job_id="301", **me, worker_pid=os.getpid())  # training
    _attempt(ledger, runs[4], 1, job_id="401", **liveness.owner_attrs("job", _ended_pid()))  # killed
    _attempt(ledger, runs[5], 1, job_id="501", **me)  # its job waits for a slot
    ledger.set_attrs(_attempt(ledger, runs[6], 1, job_id="601"), {  # on another host, its heartbeat stale
        "job_host": "another-host", "job_pid": 1, "job_pid_start": "1", "sacred_dir": str(heartbeat)})
    _done(ledger, runs[7], 1, math.inf)
    _done(ledger, runs[8], 2, 60.0)  # a later attempt written first: a run's state is its latest attempt's
    _failed(ledger, runs[8], 1)
    withdrawn = _attempt(ledger, runs[9], 1)  # a submission sbatch refused: it belongs to no run
    ledger.set_attrs(withdrawn, {"run_key": None})
    ledger.fail(withdrawn, "sbatch refused")  # runs[9]: missing
    _attempt(ledger, runs[10], 1, **liveness.owner_attrs("launcher", _ended_pid()))  # its launcher was killed
    _attempt(ledger, runs[11], 1, **liveness.owner_attrs("launcher", os.getpid()))  # being submitted


@pytest.fixture
def grid(tmp_path, write_study):
    path = write_study("read", axes=[{"name": "m", "key": "teacher.momentum",
                                      "values": [0.99, 0.992, 0.994, 0.995, 0.996, 0.998]}], seeds=2)
    beat = tmp_path / "sacred" / "stale"
    beat.mkdir(parents=True)
    (beat / "run.json").write_text(json.dumps({"status": "RUNNING"}))
    old = time.time() - liveness.STALE_HEARTBEAT_S - 60
    os.utime(beat / "run.json", (old, old))
    return path, beat


def _status(capsys, path, results, storage) -> str:
    capsys.readouterr()
    assert main([str(path), "--status", "--results", str(results), "--storage", storage]) == 0
    return capsys.readouterr().out


def _runs(path, results, storage):
    return context(parser().parse_args([str(path), "--status", "--results", str(results), "--storage", storage])).runs


def test_status_shows_the_same_table_from_a_database_as_from_a_journal(tmp_path, grid, capsys):
    path, beat = grid
    journal, database = str(tmp_path / "ledger.journal"), f"sqlite:///{tmp_path / 'ledger.db'}"
    runs = _runs(path, tmp_path / "results", journal)
    assert len(runs) == 12
    for url in (journal, database):
        write_grid_ledger(url, "read", runs, beat)
    before = (tmp_path / "ledger.db").read_bytes()

    shown = _status(capsys, path, tmp_path / "results", database)
    assert shown == _status(capsys, path, tmp_path / "results", journal)  # the journal's trials are whole
    assert (tmp_path / "ledger.db").read_bytes() == before  # reading wrote nothing

    lines = shown.splitlines()
    marked = [line for line in lines if line.startswith("marked failed: ")]
    assert [m.split(" (trial")[0] for m in marked] == [f"marked failed: {runs[i].label}" for i in (4, 6, 10)]
    assert "its process is gone" in marked[0] and "stopped its heartbeat" in marked[1]
    assert "the launcher stopped before the job was submitted" in marked[2]
    table = {line.split("  ")[0]: line.split() for line in lines if line.startswith("m=")}
    states = [table[run.label][2] for run in runs]
    assert states == ["done", "done", "failed", "running", "failed", "pending", "failed", "done", "done", "missing",
                      "failed", "pending"]
    assert [table[runs[i].label][3:5] for i in (0, 1, 7, 8)] == [["1", "61.25"], ["2", "62.50"], ["1", "inf"],
                                                               ["2", "60.00"]]
    assert ERROR in " ".join(table[runs[2].label]) and "waiting for a slot" in " ".join(table[runs[5].label])
    assert "being submitted" in " ".join(table[runs[11].label])
    assert lines[-1] == "progress: 4/12 done, 1 running, 2 pending, 4 failed, 1 missing"


def test_a_database_gives_each_trial_with_the_attributes_asked_for(tmp_path, grid):
    path, beat = grid
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    write_grid_ledger(url, "read", _runs(path, tmp_path / "results", url), beat)
    ledger = Ledger.read(url, "read")
    whole, partial = ledger.trials(), ledger.trials(STATUS_ATTRS)
    assert [t.number for t in partial] == [t.number for t in whole] == list(range(len(whole)))
    assert [(t.state, t.values) for t in partial] == [(t.state, t.values) for t in whole]
    assert [t.user_attrs for t in partial] == [{k: v for k, v in t.user_attrs.items() if k in STATUS_ATTRS}
                                               for t in whole]
    assert all(t.intermediate_values and "loss" in t.user_attrs for t in whole if t.state == TrialState.COMPLETE)
    assert not any(t.intermediate_values or "loss" in t.user_attrs for t in partial)  # left out
    assert {run: [t.number for t in trials] for run, trials in ledger.attempts(STATUS_ATTRS).items()} == \
        {run: [t.number for t in trials] for run, trials in ledger.attempts().items()}
    assert ledger.trials(("no such attribute",))[0].user_attrs == {}
    assert [t.state for t in partial].count(TrialState.RUNNING) == 6


def test_a_boundary_verdict_reads_the_same_from_either_storage(tmp_path, capsys):
    study = {"description": "test boundary read", "set": dict(MICRO_SET),
             "boundary": {"name": "tau_t", "key": "loss.teacher_temp", "low": 0.18, "high": 0.42,
                          "tolerance": 0.03, "budget": 6}}
    path = tmp_path / "tau_read.toml"
    path.write_text(tomli_w.dumps(study))
    journal, database = str(tmp_path / "ledger.journal"), f"sqlite:///{tmp_path / 'ledger.db'}"
    low, high = _runs(path, tmp_path / "results", journal)
    for url in (journal, database):
        ledger = _ledger(url, "tau_read")
        _done(ledger, low, 1, 40.0, collapse="uniform")
        _done(ledger, high, 1, 60.0, collapse=NONE)
    shown = _status(capsys, path, tmp_path / "results", database)
    assert shown == _status(capsys, path, tmp_path / "results", journal)
    assert shown.splitlines()[-1].startswith("boundary: bracket [0.18, 0.42]")


def test_the_read_only_commands_never_import_sacred(tmp_path):
    """sacred costs about a second to import; only a run that records, or an --observer to check
    against sacred's own options, needs it."""
    script = ("import sys\nfrom studies.run import main\n"
              f"code = main(['centering_momentum', '--dry-run', '--results', {str(tmp_path / 'r')!r}])\n"
              "assert code == 0, code\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'sacred'))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
