"""Checkpoints that survive a kill or a full disk mid-write, and load with ``weights_only=True``
(no pickled code runs on resume).

A rename over the old file is not enough on its own: on filesystems without atomic rename, or
after a crash that lost the data of a renamed file, the newest checkpoint can still be torn, and
then every retry of the run failed in torch's reader. So the checkpoint before it is kept beside
it (``checkpoint.pth`` and ``checkpoint.prev.pth``), and resuming falls back to it when the newest
is unreadable: the trainer retrains that one epoch deterministically, so the run still ends with
the metrics of an uninterrupted one. torch's reader does not check the zip's CRCs (damaged tensor
bytes load silently as wrong weights), so loading checks them first.

Which checkpoint a config may resume is decided here too: the one of the same config, speed
settings aside (``identity``), in the folder named after it (``default_run_dir``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from core.config import DINOConfig

# Settings that change how fast a run goes, not what it computes: a run may resume with them changed.
SPEED_SETTINGS = ("compile",)


class CheckpointError(RuntimeError):
    """No checkpoint of the run folder can be read; the message says which file and what to do."""


def identity(config: dict) -> dict:
    """What a checkpoint must have been trained with to be resumed under ``config`` (a config dict)."""
    return {k: v for k, v in config.items() if k not in SPEED_SETTINGS}


def default_run_dir(profile: str, config: DINOConfig) -> Path:
    """``runs/train/<profile>-<hash8>``: one folder per config, so two commands with different
    ``--set`` never resume each other's checkpoint."""
    canonical = json.dumps(identity(config.to_dict()), sort_keys=True).encode()
    return Path("runs/train") / f"{profile}-{hashlib.sha256(canonical).hexdigest()[:8]}"


def previous_path(path: Path) -> Path:
    """Where the checkpoint before ``path`` is kept: ``checkpoint.pth`` -> ``checkpoint.prev.pth``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write the new checkpoint to a temporary file, flushed to disk, and only then make it the
    newest, the newest before it becoming the previous one. A write that fails (disk full)
    leaves both as they were."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if path.exists():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint: ``path``, else the previous one (saying so in one line);
    None when the run has none yet. A newest file that cannot be read is moved aside to
    ``<name>.unreadable``, so that the next save does not keep it as the previous checkpoint."""
    path = Path(path)
    previous = previous_path(path)
    if not path.exists() and not previous.exists():
        return None
    state, problem = _read(path)
    if state is not None:
        return state
    state, fallback = _read(previous)
    if state is None:
        files = [p for p in (path, previous) if p.exists()]
        why = "; ".join(f"{p} {w}" for p, w in ((path, problem), (previous, fallback)) if p.exists())
        raise CheckpointError(f"no checkpoint of this run can be resumed from: {why}; delete "
                              f"{'it' if len(files) == 1 else 'them'} to start the run over "
                              f"(rm {' '.join(map(str, files))})")
    aside = path.with_name(path.name + ".unreadable")
    kept = ""
    if path.exists():
        with contextlib.suppress(FileNotFoundError):  # under DDP every rank loads; one moves it
            os.replace(path, aside)
        kept = f"; the unreadable file is kept as {aside.name}"
    print(f"{path} {problem}: resuming from {previous.name}, the epoch before (epoch {state.get('epoch')}){kept}",
          flush=True)
    return state


def _read(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint's state, or None and why it cannot be resumed from."""
    if not path.exists():
        return None, "is missing (the run stopped while replacing it)"
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged is None:
            return torch.load(path, map_location="cpu", weights_only=True), ""
        reason = f"damaged data in {damaged}"
    except Exception as error:  # whatever the reader trips on, this file cannot be resumed from
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:200]
    return None, f"is unreadable ({reason})"
