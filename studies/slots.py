"""Local run slots: at most N runs train at once, and the next ones wait already warmed up.

A run spends seconds before it trains: a new Python process, importing torch and timm, and
sacred's scan of the sources (about 3 s here). The local launcher therefore starts up to N runs
more than ``--max-parallel``; they start up while the others train and then wait for a slot, so
their start-up is hidden behind that training (a run opens the ledger and builds its data once
it holds a slot). A slot is an exclusive ``flock`` on one of N files; the kernel releases it when
its process ends however it ends (success, error, SIGKILL, time-out), so a slot can never leak
and a killed run frees its slot at once.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

POLL_S = 0.02


def slot_files(folder: str | Path, count: int) -> tuple[str, ...]:
    """The lock files of ``count`` slots in ``folder`` (created on first use)."""
    return tuple(str(Path(folder) / f"slot-{i}.lock") for i in range(count))


def acquire(files: tuple[str, ...]) -> int:
    """Block until one of ``files`` is locked by this process; returns the open descriptor
    (closing it, or the process ending, frees the slot)."""
    Path(files[0]).parent.mkdir(parents=True, exist_ok=True)
    while True:
        for path in files:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        time.sleep(POLL_S)
