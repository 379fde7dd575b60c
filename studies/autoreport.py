"""A study writes its report without being asked: after a local launch, from the job that
finishes last on a cluster (the launcher may be long gone by then), and on a rerun that finds
nothing to launch but a report that is missing or older than the last attempt to end (deleted,
failed to build, or its launcher was stopped first).

The engine does not know who builds reports: its entry point (``studies.run``) hands it the
builder by name, ``"module:function"`` called as ``function(study, results_dir, storage=...)``,
and a cluster job receives the same name in its spec, so ``studies`` never imports ``reports``.
"""
from __future__ import annotations

import datetime
import importlib
import threading
from pathlib import Path
from typing import Callable, Sequence

from optuna.trial import FrozenTrial, TrialState

from studies.layout import Layout
from studies.ledger import Ledger


def resolve(builder: str) -> Callable[..., Path]:
    """The function a ``"module:function"`` name stands for, imported when first needed."""
    module, _, function = builder.partition(":")
    return getattr(importlib.import_module(module), function)


def import_in_background(builder: str) -> None:
    """Import the report builder (seaborn, matplotlib: about a second) on a thread while the
    runs train, so that the report written at the end costs only its own drawing."""
    threading.Thread(target=importlib.import_module, args=(builder.partition(":")[0],), daemon=True).start()


def write_report(builder: str, study: str, results_dir: Path, storage: str) -> Path | None:
    """Build the study's report; a report problem is printed, never raised into the study."""
    try:
        path = resolve(builder)(study, results_dir, storage=storage)
    except Exception as error:  # the runs are recorded whatever happens to the page
        print(f"report not written ({type(error).__name__}: {error}); "
              f"rebuild it with: python -m reports.build {study} --results {results_dir}")
        return None
    print(f"report: {path}")
    return path


def write_report_if_finished(builder: str, study: str, results_dir: Path, storage: str, ledger: Ledger) -> None:
    """Build the report unless an attempt is still running: the job that ends last builds it
    (every job of a cluster study asks, ``Ledger.any_running``)."""
    if not ledger.any_running():
        write_report(builder, study, results_dir, storage)


def write_report_if_stale(builder: str, study: str, results_dir: Path, storage: str,
                          trials: Sequence[FrozenTrial]) -> None:
    """Rebuild the report if it is missing or older than the last attempt to end, once no
    attempt is still running (whoever waits for that one writes the report when it ends)."""
    if any(t.state == TrialState.RUNNING for t in trials):
        return
    ended = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    if not ended:
        return
    page = Layout(results_dir).report_page
    if page.is_file() and datetime.datetime.fromtimestamp(page.stat().st_mtime) >= max(ended):
        return
    write_report(builder, study, results_dir, storage)
