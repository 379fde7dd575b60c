"""What the tests share: the micro configurations (real DINO trainings of seconds), and readers
of a study's ledger, sacred records and checkpoints."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from core import profiles
from studies.ledger import open_storage

# The micro profile (ablations/profiles/micro.toml) as what it sets over tiny, for study files
# on tiny; micro_config is the same config, from the profile itself.
MICRO = dict(profiles.load("micro").own)


def micro_config(**overrides):
    """``micro_config(**{"teacher.update": "previous_epoch"})`` -> DINOConfig."""
    return profiles.profile_config("micro", overrides)


# Studies that train for seconds: micro with half its images and a smaller k-NN, no warm-ups, and
# fp32 (bf16 on CPU spends about 8 s compiling kernels in each new process).
MICRO_SET = {**MICRO, "data.train_subset": 128, "optim.warmup_epochs": 0, "loss.teacher_temp_warmup_epochs": 0,
             "eval.max_memory": 1000, "eval.max_queries": 300, "precision": "fp32"}


REPO = Path(__file__).resolve().parent.parent


def trials(results: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=open_storage(str(results / "ledger.journal")))
    return study.get_trials()


def by_label(results: Path, name: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    found: dict[str, list] = {}
    for t in sorted(trials(results, name), key=lambda t: t.user_attrs["attempt"]):
        found.setdefault(t.user_attrs["label"], []).append(t)
    return found


def sacred(trial, name: str):
    return json.loads((Path(trial.user_attrs["sacred_dir"]) / name).read_text())


def epoch_steps(trial) -> list[int]:
    return sacred(trial, "metrics.json")["epoch.loss"]["steps"]


def checkpoint_epoch(run_dir: str) -> int:
    path = Path(run_dir) / "checkpoint.pth"
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return 0


# 16 iterations per epoch instead of 2: the tests below act on a run while it trains, and at 2
# iterations a whole run (about a second) can end between two polls of the ledger.
SLOW_EPOCHS = {"data.train_subset": 1024}


def wait_for(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def launcher(*argv) -> subprocess.Popen:
    """``python -m studies.run`` in its own process (so a test can kill it)."""
    return subprocess.Popen([sys.executable, "-m", "studies.run", *map(str, argv)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def running_with_checkpoint(results: Path, name: str, count: int, min_epoch: int):
    """The RUNNING trials once ``count`` of them train past ``min_epoch`` epochs, else None."""
    try:
        running = [t for t in trials(results, name) if t.state == TrialState.RUNNING]
    except KeyError:  # the launcher has not created the study yet
        return None
    ready = [t for t in running if "worker_pid" in t.user_attrs
             and checkpoint_epoch(t.user_attrs["run_dir"]) >= min_epoch]
    return ready if len(ready) >= count else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_args(overrides) -> list[str]:
    """``{"epochs": 2, "early_stop.enabled": False}`` -> ``["--set", "epochs=2", "--set",
    "early_stop.enabled=false"]``: values as a user types them on the command line (TOML's)."""
    return [arg for key, value in overrides.items()
            for arg in ("--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}")]
