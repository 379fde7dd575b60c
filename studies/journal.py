"""Keep a damaged ledger journal readable: set its damaged lines aside, keep every intact entry.

optuna's ``JournalFileBackend`` replays the whole file on every open, one JSON entry per line.
A crash or a full disk mid-append leaves a torn last line; optuna skips a bad *last* line, but the
next append is glued onto it and from then on every reader fails with ``JSONDecodeError``, so no
trial of the study can be read. Garbage written into the file does the same. Before the ledger
is opened, its file is checked (a read, nothing written when it is intact); damaged lines are
moved into a backup beside the journal and the intact entries stay, in order. That includes the
entry a later writer glued onto a torn line: it is cut back out, since it is a real write of a job
that is still running (a torn line and later appends is what a job killed mid-append leaves).

Rewriting the journal keeps every byte before the first damaged line where it was, and the
offsets other open readers cache only ever point at or before that line, so processes that are
running keep reading the journal correctly. The rewrite holds optuna's own journal lock, so no
append is lost to it, and a line still being appended is never mistaken for a torn one.

**Snapshots.** Replaying the whole file on every open made each job of a 10,000-run study spend
seconds reading the ledger (and the check above parsed it once more). ``Journal`` is optuna's
``JournalStorage`` over the same file plus ``<journal>.snapshot``: optuna's own snapshot (the
pickled replay state, as ``BaseJournalSnapshot`` defines it) with the number of entries and the
byte offset it covers. An open loads it, seeks to that offset and replays only the entries after
it; the damage check starts there too, since a replay had already read every line before it
intact. A process that writes to the ledger (launcher, job) renews the snapshot when it is
``SNAPSHOT_ENTRIES`` or more entries behind; readers (``--status``, reports) never write it. A
snapshot that does not match the journal (the journal replaced, truncated or rewritten before
its offset; another optuna version) is ignored: the whole file is replayed, as before. It is
read with ``pickle``, so it deserves the same trust as the results folder it lives in.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.storages.journal._base import BaseJournalSnapshot  # public in optuna's docs, not re-exported

_ENTRY_START = b'{"op_code":'  # how optuna serialises every entry (json.dumps of a dict, op_code first)
SNAPSHOT_ENTRIES = 2000  # how far behind the journal a writer lets the snapshot fall (about 80 jobs' writes)


def repair(path: str | Path) -> str | None:
    """Set the journal's damaged lines aside; returns a one-line report, or None if intact."""
    path = Path(path)
    if not path.is_file():
        return None
    header = _snapshot_header(path)
    start = header["offset"] if header else 0  # a replay read every line before it intact
    if not _split(_read_from(path, start))[1]:
        return None
    lock = JournalFileSymlinkLock(str(path))  # the lock optuna's own appends hold
    lock.acquire()
    try:
        data = path.read_bytes()
        kept, damaged = _split(data[start:])  # again: the tail may have been an append in progress
        if not damaged:
            return None
        backup = path.with_name(f"{path.name}.damaged-{datetime.datetime.now():%Y%m%d-%H%M%S-%f}")
        _write(backup, b"".join(damaged))
        _write(path, data[:start] + b"".join(kept))
    finally:
        lock.release()
    size = sum(map(len, damaged))
    return (f"ledger {path}: damaged, {len(damaged)} line(s) ({size} bytes) set aside into {backup}; "
            f"its {len(kept)} intact entries are kept")


def _split(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """The file's intact entries (lines) and its damaged pieces, in file order."""
    kept, damaged = [], []
    for line in data.splitlines(keepends=True):
        start = 0
        while start >= 0 and not (line.endswith(b"\n") and _is_entry(line[start:])):
            start = line.find(_ENTRY_START, start + 1)
        if start >= 0:
            kept.append(line[start:])
        if start != 0:
            damaged.append(line[:start] if start > 0 else line)
    return kept, damaged


def _is_entry(line: bytes) -> bool:
    try:
        entry = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return False
    return isinstance(entry, dict) and "op_code" in entry


def _write(path: Path, data: bytes, unique: bool = False) -> None:
    """Write through a temporary file and a rename, so the file is whole at every moment
    (``unique``: a temporary name of this process's own, for files other processes write too)."""
    tmp = path.with_name(path.name + (f".tmp-{os.getpid()}" if unique else ".tmp"))
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_from(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


class Journal(JournalStorage):
    """optuna's journal storage of ``path``, opened from its snapshot when it has a valid one."""

    def __init__(self, path: str | Path):
        backend = _SnapshotFile(str(path))
        super().__init__(backend)
        # what a snapshot holds: optuna's replay state, exactly as optuna pickles it for its own snapshots
        backend.state = lambda: (self._replay_result.log_number_read, pickle.dumps(self._replay_result))
        self._file = backend

    def renew_snapshot(self) -> None:
        """Renew the snapshot as a writer does after its writes: for a journal that was appended
        to by other means (optuna's own backend: the ledger benchmark writes its ledger so)."""
        self._file._renew()


class _SnapshotFile(JournalFileBackend, BaseJournalSnapshot):
    """The journal file, and its snapshot beside it (``<journal>.snapshot``): a JSON header line
    (entries covered, their byte length, a hash of the last entry, optuna's version), then the
    pickle."""

    def __init__(self, file_path: str):
        super().__init__(file_path)
        self.snapshot_path = Path(file_path + ".snapshot")
        self.state: Callable[[], tuple[int, bytes]] | None = None
        self.covered = 0  # entries the snapshot on disk covers, as far as this process knows

    def load_snapshot(self) -> bytes | None:
        try:  # one read: a writer may replace the file meanwhile, never its header apart from its pickle
            first, snapshot = self.snapshot_path.read_bytes().split(b"\n", 1)
        except (OSError, ValueError):  # none yet
            return None
        header = _matching(first, Path(self._file_path))
        if header is None:
            return None
        # optuna's reader seeks to a known entry's offset instead of reading every line before it
        self._log_number_offset[header["entries"]] = header["offset"]
        self.covered = header["entries"]
        return snapshot

    def save_snapshot(self, snapshot: bytes) -> None:
        """optuna's own call (every 100th trial created) goes through the same rule as ours."""
        self._renew()

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        super().append_logs(logs)
        self._renew()

    def _renew(self) -> None:
        """Write a new snapshot of the state replayed so far if the one on disk is far behind."""
        if self.state is None or not self._behind():
            return
        entries, snapshot = self.state()
        if entries - 1 not in self._log_number_offset or entries not in self._log_number_offset:
            return  # nothing read since the snapshot this process opened
        start, end = self._log_number_offset[entries - 1], self._log_number_offset[entries]
        header = {"entries": entries, "offset": end, "optuna": optuna.__version__, "last_start": start,
                  "last_sha256": _sha256(Path(self._file_path), start, end)}
        _write(self.snapshot_path, json.dumps(header).encode() + b"\n" + snapshot, unique=True)
        self.covered = entries

    def _behind(self) -> bool:
        """Whether the state read so far is at least ``SNAPSHOT_ENTRIES`` past the snapshot, read
        from optuna's reader (its offsets go one past the last entry read) before pickling anything."""
        return max(self._log_number_offset) - self.covered >= SNAPSHOT_ENTRIES


def _snapshot_header(journal: Path) -> dict[str, Any] | None:
    """The header of the journal's snapshot if it matches the journal as it is now, else None."""
    try:
        with open(journal.with_name(journal.name + ".snapshot"), "rb") as f:
            first = f.readline()
    except OSError:  # none yet
        return None
    return _matching(first, journal)


def _matching(first: bytes, journal: Path) -> dict[str, Any] | None:
    """The header line ``first``, if its snapshot is of ``journal`` as it is now (the entry it ends
    at still in place, written by this optuna), else None: then the whole journal is replayed."""
    try:
        header = json.loads(first)
        if header.get("optuna") != optuna.__version__ or journal.stat().st_size < header["offset"]:
            return None
        if _sha256(journal, header["last_start"], header["offset"]) != header["last_sha256"]:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # a torn or foreign header
        return None
    return header


def _sha256(path: Path, start: int, end: int) -> str:
    with open(path, "rb") as f:
        f.seek(start)
        return hashlib.sha256(f.read(end - start)).hexdigest()
