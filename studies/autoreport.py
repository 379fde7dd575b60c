"""A study writes its report without being asked: after a local launch, and from the job that
finishes last on a cluster (the launcher may be long gone by then)."""
from __future__ import annotations

import importlib
import threading
from pathlib import Path

from optuna.trial import TrialState

from studies.ledger import Ledger


def import_in_background() -> None:
    """Import the report builder (seaborn, scipy, matplotlib: about a second) on a thread while the
    runs train, so that the report written at the end costs only its own drawing."""
    threading.Thread(target=importlib.import_module, args=("reports.build",), daemon=True).start()


def write_report(study: str, results_dir: Path, storage: str) -> Path | None:
    """Build the study's report; a report problem is printed, never raised into the study."""
    from reports.build import build_report  # here: reports imports studies, not the reverse

    try:
        path = build_report(study, results_dir, storage=storage)
    except Exception as error:  # the runs are recorded whatever happens to the page
        print(f"report not written ({type(error).__name__}: {error}); "
              f"rebuild it with: python -m reports.build {study} --results {results_dir}")
        return None
    print(f"report: {path}")
    return path


def write_report_if_finished(study: str, results_dir: Path, storage: str, ledger: Ledger) -> None:
    if not any(t.state == TrialState.RUNNING for t in ledger.trials()):
        write_report(study, results_dir, storage)
