"""Claims on runs, so that launchers sharing one study never start a run twice.

Two launchers on one results folder (two people, or a retry while the first still runs) each
plan from the ledger as they found it, so each would start the runs the other started since:
two trials for one run, two processes training one folder, one resuming from the other's
half-trained checkpoint. Two exclusive ``flock`` locks prevent it; the kernel releases a lock
when its holder dies, however it dies, so no claim outlives its owner and none needs clearing:

* ``launching(results)``, held by a launcher while it rereads a run's attempts from the ledger and
  creates the next one: checking that a run is still as planned and claiming it are one step.
* ``training(run_dir)``, held by the job training a run folder for as long as it trains, so that
  nothing else trains that folder, whatever the ledger says (a trial marked failed whose job
  still runs, a hand-started ``core.train``); launchers ask ``holder`` before starting a run.

On SLURM these files are on the shared filesystem, where Linux's NFS client takes flocks on the
server, so the claims hold across nodes.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator

from studies.layout import Layout
from studies.liveness import this_host

TRAIN_LOCK = "train.lock"  # in a run folder; holds "pid <pid> on <host>" of the job training it
PROBE_RETRIES = 20  # 2 s of 0.1 s retries before a held run folder counts as in training


class FolderInTraining(RuntimeError):
    """Another process trains the run folder; this one must not."""


def try_lock(path: str | Path) -> int | None:
    """An open descriptor holding ``path``'s exclusive lock (created if need be), or None if
    another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def launching(results: Path) -> Iterator[None]:
    """The study's launch lock: one launcher at a time checks and claims a run (milliseconds)."""
    results.mkdir(parents=True, exist_ok=True)
    fd = os.open(Layout(results).launch_lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def training(run_dir: str | Path) -> Iterator[None]:
    """Hold the run folder for this process; ``FolderInTraining`` if another process trains it."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fd = try_lock(folder / TRAIN_LOCK)
    for _ in range(PROBE_RETRIES):  # a launcher's ``holder`` probe holds the lock for microseconds
        if fd is not None:
            break
        time.sleep(0.1)
        fd = try_lock(folder / TRAIN_LOCK)
    if fd is None:
        raise FolderInTraining(f"{folder} is being trained by {holder(folder) or 'another process'}; "
                               "this attempt did not train")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {this_host()}\n".encode())
        yield
    finally:
        os.close(fd)


def holder(run_dir: str | Path) -> str | None:
    """Who trains the run folder now ("pid 123 on node7"), or None if no process does."""
    path = Path(run_dir) / TRAIN_LOCK
    if not path.is_file():
        return None
    fd = try_lock(path)
    if fd is not None:
        os.close(fd)
        return None
    return path.read_text().strip() or "another process"
