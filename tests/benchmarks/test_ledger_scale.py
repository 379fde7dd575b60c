"""The ledger at scale: the benchmark section on a small synthetic ledger, and the journal's
snapshot, which must read exactly what optuna's own full replay reads (no timing asserts)."""
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from benchmarks import ledger as bench
from studies import journal
from studies.ledger import Ledger, open_storage

REPO = Path(__file__).resolve().parents[2]


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_ledger_section_times_every_figure_on_a_small_ledger(tmp_path):
    out = tmp_path / "ledger.json"
    command = [sys.executable, "-m", "benchmarks.run", "--only", "ledger", "--ledger-runs", "200", "--out", str(out)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1500, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())["ledger"]
    # the smallest grid of at least 200 runs, axes grown in turn: 3 x 3 x 2 x 2 x 2 points x 3 seeds
    assert r["axes"] == [3, 3, 2, 2, 2] and r["runs"] == 216
    # of the 216 runs, indices 0-4, 100-104, 200-204 have no trial and 13-15, 113-115, 213-215 two
    assert r["trials"] == 216 - 15 + 9
    assert _positive(r["plan_s"]) and r["dry_run"]["ok"] and r["dry_run"]["lines"] > 216
    assert set(r["storages"]) == {"journal", "sqlite"}
    for kind, s in r["storages"].items():
        assert s["status"]["ok"], (kind, s["status"])
        # done: the 216 runs less 15 missing, 15 running (slots 5-9) and 9 failed (slots 10-12)
        assert s["status"]["summary"].startswith("progress: 177/216 done"), s["status"]["summary"]
        assert len(s["jobs"]) == bench.JOBS and _positive(s["bytes"])
        for key in ("load_s", "write_s", "job_s"):
            assert _positive(s["job"][key]), (kind, key)
        for job in s["jobs"]:  # the whole job spans its timed steps
            assert job["job_s"] >= job["load_s"] + job["read_s"] + job["write_s"] + job["report_check_s"]
    assert r["storages"]["journal"]["entries"] > r["trials"]  # several entries per trial
    table = proc.stdout[proc.stdout.index("a study of 216 runs"):]
    assert [line.split()[0] for line in table.splitlines()[3:5]] == ["journal", "sqlite"]


def _runs(n: int) -> list[SimpleNamespace]:
    """Plain rows shaped like ``plan.Run``: what the synthetic ledger reads of a run."""
    return [SimpleNamespace(key=f"{i:012x}", label=f"a={i} seed=0", axes={"a": str(i)}, seed=0, paper=None,
                            name=f"a={i}_seed=0") for i in range(n)]


def _replayed(path: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials as optuna's own journal storage reads them: every entry from the first."""
    return optuna.load_study(study_name=bench.STUDY, storage=JournalStorage(JournalFileBackend(str(path)))).trials


def _opened(path: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=bench.STUDY, storage=open_storage(str(path))).trials


def test_a_writer_keeps_a_snapshot_that_reads_what_a_full_replay_reads(tmp_path, capsys):
    path = tmp_path / "ledger.journal"
    snapshot = tmp_path / "ledger.journal.snapshot"
    synthetic = bench.synthetic_ledger(_runs(100), tmp_path / "results")
    running = synthetic.running
    bench.write(synthetic, str(path))
    entries = len(path.read_bytes().splitlines())
    assert entries > journal.SNAPSHOT_ENTRIES

    assert Ledger.read(str(path), bench.STUDY) is not None and not snapshot.exists()  # readers write none
    bench.one_job(str(path), running[0])  # a job writes: the snapshot falls behind by all of it
    header = json.loads(snapshot.read_bytes().split(b"\n", 1)[0])
    assert header["entries"] == entries  # the state it opened, renewed once at its first write
    assert _opened(path) == _replayed(path) and _opened(path)[running[0]].state.name == "COMPLETE"

    # another process appends after the snapshot, through optuna alone: an open sees it
    raw = optuna.load_study(study_name=bench.STUDY, storage=JournalStorage(JournalFileBackend(str(path))))
    raw._storage.set_trial_user_attr(raw.trials[running[1]]._trial_id, "written_after", True)
    assert _opened(path) == _replayed(path) and _opened(path)[running[1]].user_attrs["written_after"] is True

    # garbage after the snapshot's entries is set aside as before, and the snapshot still serves
    intact = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b"\x00not an entry\n")
    assert _opened(path) == _replayed(path) and path.read_bytes() == intact
    assert " set aside into " in capsys.readouterr().err

    # the entries the snapshot covers are not read again: its first line overwritten in place
    # leaves what an open reads unchanged
    lines, before = intact.splitlines(keepends=True), _replayed(path)
    path.write_bytes(b"x" * (len(lines[0]) - 1) + b"\n" + b"".join(lines[1:]))
    assert _opened(path) == before

    # a journal cut before the snapshot's end: the snapshot no longer matches and is not used
    path.write_bytes(b"".join(lines[:entries - 10]))
    assert _opened(path) == _replayed(path) and _opened(path)[running[0]].state.name == "RUNNING"
