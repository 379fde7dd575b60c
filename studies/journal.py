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
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from optuna.storages.journal import JournalFileSymlinkLock

_ENTRY_START = b'{"op_code":'  # how optuna serialises every entry (json.dumps of a dict, op_code first)


def repair(path: str | Path) -> str | None:
    """Set the journal's damaged lines aside; returns a one-line report, or None if intact."""
    path = Path(path)
    if not path.is_file() or not _split(path.read_bytes())[1]:
        return None
    lock = JournalFileSymlinkLock(str(path))  # the lock optuna's own appends hold
    lock.acquire()
    try:
        kept, damaged = _split(path.read_bytes())  # again: the tail may have been an append in progress
        if not damaged:
            return None
        backup = path.with_name(f"{path.name}.damaged-{datetime.datetime.now():%Y%m%d-%H%M%S-%f}")
        _write(backup, b"".join(damaged))
        _write(path, b"".join(kept))
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


def _write(path: Path, data: bytes) -> None:
    """Write through a temporary file and a rename, so the journal is whole at every moment."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
