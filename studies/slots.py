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

import time
from pathlib import Path

from studies.claims import try_lock

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
            fd = try_lock(path)
            if fd is not None:
                return fd
        time.sleep(POLL_S)
