"""Faults a study must survive, made for real: a damaged ledger journal, two launchers on one
study, a run folder held by another process, a killed holder, a deleted report."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from reports.load import load_study
from studies import claims, plan, spec
from studies.liveness import this_host
from studies.run import main
from tests.helpers import REPO, SLOW_EPOCHS, by_label, launcher, sacred, trials



def finished_study(write_study, tmp_path, capsys, name: str):
    """A micro study of two runs, run to the end; its study file and results folder."""
    path = write_study(name, axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9, 0.99]}],
                       set={"epochs": 1})
    results = tmp_path / "results"
    assert main([str(path), "--results", str(results)]) == 0
    capsys.readouterr()
    return path, results


def damage_lines(text: str) -> list[str]:
    """The lines reporting a damaged journal."""
    return [line for line in text.splitlines() if " set aside into " in line]


def raw_journal(path: Path) -> JournalStorage:
    """optuna's own journal storage, without the studies engine's repair."""
    return JournalStorage(JournalFileBackend(str(path)))


def backup_named(line: str) -> Path:
    return Path(line.split(" set aside into ")[1].split("; ")[0])


def test_read_only_commands_leave_the_journal_byte_identical_and_a_rerun_rebuilds_the_report(
        write_study, tmp_path, capsys):
    path, results = finished_study(write_study, tmp_path, capsys, "readonly")
    journal = results / "ledger.journal"
    before = journal.read_bytes(), journal.stat().st_mtime_ns

    def rerun() -> str:
        assert main([str(path), "--results", str(results)]) == 0
        out = capsys.readouterr().out
        assert "nothing to submit" in out
        return out

    assert main([str(path), "--results", str(results), "--status"]) == 0
    assert "2/2 done" in capsys.readouterr().out
    assert main([str(path), "--results", str(results), "--dry-run"]) == 0
    assert main(["--list"]) == 0
    assert len(load_study(results).runs) == 2  # what reports read
    rerun()
    assert (journal.read_bytes(), journal.stat().st_mtime_ns) == before

    page = results / "report" / "report.html"
    shutil.rmtree(results / "report")
    assert f"report: {page}" in rerun() and page.is_file()
    os.utime(page, (0, 0))  # older than the last run
    assert f"report: {page}" in rerun() and page.stat().st_mtime > 0
    assert f"report: {page}" not in rerun()  # up to date: left alone
    assert journal.read_bytes() == before[0]


def test_a_damaged_journal_is_set_aside_reported_once_and_loses_no_intact_trial(write_study, tmp_path, capsys):
    path, results = finished_study(write_study, tmp_path, capsys, "damaged")
    journal = results / "ledger.journal"
    original = journal.read_bytes()
    argv = [str(path), "--results", str(results)]

    # Garbage appended (a line, then a piece without its newline).
    with open(journal, "ab") as f:
        f.write(b"\x00\x00not a journal entry {\n" + b"\x00" * 100)
    assert main(argv + ["--status"]) == 0
    out = capsys.readouterr()
    (line,) = damage_lines(out.err)
    assert backup_named(line).read_bytes() == b"\x00\x00not a journal entry {\n" + b"\x00" * 100
    assert journal.read_bytes() == original and "2/2 done" in out.out
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "nothing to submit (progress: 2/2 done" in out.out and not damage_lines(out.out + out.err)

    # The last line cut in half by a crash, and a process that still had the journal open
    # appending after it (optuna skips a bad last line, so it writes straight onto the torn one).
    lines = original.splitlines(keepends=True)
    torn = lines[-1][:len(lines[-1]) // 2]
    journal.write_bytes(b"".join(lines[:-1]) + torn)
    still_running = optuna.load_study(study_name="damaged", storage=raw_journal(journal))
    still_running.set_user_attr("written_after_the_crash", True)
    assert main(argv + ["--status"]) == 0
    out = capsys.readouterr()
    (line,) = damage_lines(out.err)
    assert backup_named(line).read_bytes() == torn and "1/2 done, 0 running, 1 failed" in out.out
    assert journal.read_bytes().startswith(b"".join(lines[:-1]))
    assert optuna.load_study(study_name="damaged", storage=raw_journal(journal)).user_attrs == {
        "written_after_the_crash": True}

    # The run whose last entry (COMPLETE) was torn off resumes from its finished checkpoint.
    assert main(argv + ["--retry-failed"]) == 0
    out = capsys.readouterr()
    assert not damage_lines(out.out + out.err)
    assert main(argv + ["--status"]) == 0
    assert "2/2 done" in capsys.readouterr().out
    assert sum(t.state == TrialState.COMPLETE for t in trials(results, "damaged")) == 2


def test_two_launchers_on_one_study_train_every_run_exactly_once(write_study, tmp_path, capsys):
    """Started about a second apart, each launcher plans from the ledger as it finds it, so each
    plans runs that the other starts (the first, with one run at a time, comes to its third run
    long after the second launcher started); each run must be claimed by one of them only."""
    values = [0.0, 0.9, 0.95, 0.99]
    path = write_study("shared", axes=[{"name": "m", "key": "loss.center_momentum", "values": values}],
                       set={"epochs": 2, **SLOW_EPOCHS})
    results = tmp_path / "results"
    first = launcher(path, "--results", results, "--max-parallel", "1")
    time.sleep(1)
    second = launcher(path, "--results", results, "--max-parallel", "1")
    try:
        outputs = [first.communicate(timeout=600)[0], second.communicate(timeout=600)[0]]
    finally:
        first.kill()
        second.kill()
    assert [first.returncode, second.returncode] == [0, 0], outputs
    runs = by_label(results, "shared")
    assert len(runs) == len(values)
    both = "\n".join(outputs)
    for label, attempts in runs.items():
        assert [t.state for t in attempts] == [TrialState.COMPLETE], label
        (trial,) = attempts
        assert both.count(f"training in {trial.user_attrs['run_dir']} ") == 1, label
        metrics = sacred(trial, "metrics.json")
        assert metrics["epoch.loss"]["steps"] == [1, 2], label
        assert metrics["iteration.loss"]["steps"] == list(range(2 * 1024 // 64)), label
    assert main([str(path), "--results", str(results), "--status"]) == 0
    assert f"{len(values)}/{len(values)} done" in capsys.readouterr().out


def test_a_run_folder_in_training_is_left_to_its_owner(write_study, tmp_path, capsys):
    path = write_study("owned", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0.9]}],
                       set={"epochs": 1})
    results = tmp_path / "results"
    (run,) = plan.expand(spec.load(str(path)), "tiny")
    with claims.training(results / "runs" / run.name):  # e.g. a core.train started by hand
        assert main([str(path), "--results", str(results)]) == 0
        out = capsys.readouterr().out
    assert f"[{run.label}] left to its owner: {results / 'runs' / run.name} is being trained by " \
           f"pid {os.getpid()} on {this_host()}" in out
    assert trials(results, "owned") == []  # not claimed: still missing
    assert main([str(path), "--results", str(results)]) == 0
    assert "1/1 done" in capsys.readouterr().out


def test_a_killed_holder_releases_its_run_folder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom studies import claims\nwith claims.training(sys.argv[1]):\n"
                               "    print('held', flush=True)\n    time.sleep(600)", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert claims.holder(tmp_path) == f"pid {holder.pid} on {this_host()}"
        try:
            with claims.training(tmp_path):
                raise AssertionError("a second process trained a held run folder")
        except claims.FolderInTraining as refused:
            assert f"pid {holder.pid}" in str(refused)
    finally:
        holder.kill()
        holder.wait()
    assert claims.holder(tmp_path) is None  # SIGKILL: the kernel released the lock
    with claims.training(tmp_path):
        assert claims.holder(tmp_path) == f"pid {os.getpid()} on {this_host()}"
