"""Live curves where people watch runs: TensorBoard event files and Weights & Biases runs.

Both are train callbacks (``core.train``'s ``callback(kind, step, metrics)``), so whatever drives
a training can draw it without ``core/`` knowing a tracker: ``studies.record`` for a study's runs
(``--observer tensorboard=DIR`` and ``wandb=PROJECT``). Each metric becomes the tag
``<kind>/<name>`` (``iteration/loss``, ``epoch/lr``, ``knn/top1``): TensorBoard groups its plots
by the part before the slash, and W&B gets one x-axis per kind (``<kind>/step``), since the
iteration and epoch records count different steps.

A resumed training first gives its checkpoint's records again, and a requeued run writes into the
same event folder: a point given twice would draw a curve that doubles back. The TensorBoard
writer reads back what its folder holds when it opens and writes no (tag, step) twice, which
also covers points a SIGKILL left in the event file but not in any other record. W&B keeps no
file to read back; its caller gives it each point once (``studies.record`` skips what the
attempt's sacred record holds).

Neither package is a dependency of the trainer: ``missing`` says, without importing anything, that
one is not installed, and the writers import theirs only when they open.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

# What the TensorBoard HParams tab shows per run, beside the hyperparameters: the k-NN and linear
# accuracies the trainer ends with, and the last loss.
HPARAM_METRICS = ("knn/top1", "knn/top5", "knn/student_top1", "knn/linear_top1", "epoch/loss")


def missing(package: str) -> str | None:
    """``"pip install <package>"`` advice if ``package`` cannot be imported here; else None."""
    try:
        found = importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # ValueError: the module was set to None in sys.modules
        found = False
    return None if found else f"the {package} package is not installed; pip install {package}"


@contextlib.contextmanager
def drawn(folder: str | Path | None) -> Iterator[TensorBoardCurves | None]:
    """A ``TensorBoardCurves`` for one training in ``folder`` (None: no curves, nor on a rank
    other than 0 under torchrun), closed as COMPLETED if the training returns, else FAILED."""
    curves = TensorBoardCurves(folder) if folder is not None and int(os.environ.get("RANK", "0")) == 0 else None
    status = "FAILED"
    try:
        yield curves
        status = "COMPLETED"
    finally:
        if curves is not None:
            curves.close(status)


class TensorBoardCurves:
    """A train callback that writes every metric as a scalar to the event files in ``folder``,
    one run of TensorBoard's run selector; with ``hparams`` (name -> number or string), the run
    is a row of TensorBoard's HParams tab too. The folder is made at the first metric, so a run
    that is refused before it trains leaves none."""

    def __init__(self, folder: str | Path, hparams: Mapping[str, Any] | None = None):
        self.folder, self.hparams = Path(folder), dict(hparams or {})
        self.writer: Any = None
        self.session_end: Any = None

    def __call__(self, kind: str, step: int, metrics: Mapping[str, float]) -> None:
        if self.writer is None:
            self._open()
        # one event per record, not one per metric as add_scalar writes: 5x faster to write (41
        # against 203 us a point), and read back per event when the run resumes
        values = [self._value(tag=f"{kind}/{name}", simple_value=float(value)) for name, value in metrics.items()
                  if (f"{kind}/{name}", step) not in self.written]
        if values:
            self.writer.file_writer.add_summary(self._summary(value=values), step)

    def close(self, status: str) -> None:
        """Flush; a COMPLETED run is marked done in the HParams tab (a FAILED or REQUEUED one stays
        open: a requeued run continues)."""
        if self.writer is None:
            return
        if status == "COMPLETED" and self.session_end is not None:
            self.writer.file_writer.add_summary(self.session_end)
        self.writer.close()

    def _open(self) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        self._summary, self._value = Summary, Summary.Value
        self.written, had_hparams = _written(self.folder)
        # every 10 s, as sacred flushes: a point shows in TensorBoard about when it is in the record
        self.writer = SummaryWriter(str(self.folder), flush_secs=10)
        if self.hparams:
            experiment, start, self.session_end = hparams_summary(self.hparams, dict.fromkeys(HPARAM_METRICS, 0.0))
            if not had_hparams:  # once per folder, also when a requeued run opens it again
                self.writer.file_writer.add_summary(experiment)
                self.writer.file_writer.add_summary(start)


class WandbCurves:
    """A train callback that logs every metric to the W&B run ``run_id`` of ``project``, resumed if
    it exists (a requeued job continues its run). W&B's own variables apply: ``WANDB_MODE=offline``
    writes the run under ``WANDB_DIR`` for a later ``wandb sync``, ``WANDB_ENTITY`` names the team."""

    def __init__(self, project: str, run_id: str, name: str, group: str, config: Mapping[str, Any]):
        import wandb

        # sacred already captures the console; W&B would wrap the same streams a second time
        self.run = wandb.init(project=project, id=run_id, name=name, group=group, config=dict(config),
                              resume="allow", settings=wandb.Settings(console="off"))
        self.kinds: set[str] = set()

    def __call__(self, kind: str, step: int, metrics: Mapping[str, float]) -> None:
        if kind not in self.kinds:  # each kind's curves over its own step: iterations, or epochs
            self.run.define_metric(f"{kind}/step")
            self.run.define_metric(f"{kind}/*", step_metric=f"{kind}/step")
            self.kinds.add(kind)
        if metrics:
            self.run.log({**{f"{kind}/{name}": float(v) for name, v in metrics.items()}, f"{kind}/step": step})

    def close(self, status: str) -> None:
        """``status``: COMPLETED (exit code 0), REQUEUED (W&B shows it preempted until it resumes)
        or FAILED."""
        if status == "REQUEUED":
            self.run.mark_preempting()
        self.run.finish(exit_code=0 if status == "COMPLETED" else 1)


def _written(folder: Path) -> tuple[set[tuple[str, int]], bool]:
    """The (tag, step) of every scalar the event files in ``folder`` hold, and whether they hold
    the run's hyperparameters."""
    if not folder.is_dir():
        return set(), False
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    # size 0: every point (the default keeps a sample of 10,000 per tag); no purge: read what is there
    events = EventAccumulator(str(folder), size_guidance={SCALARS: 0}, purge_orphaned_data=False)
    events.Reload()
    points = {(tag, event.step) for tag in events.Tags()["scalars"] for event in events.Scalars(tag)}
    try:
        return points, bool(events.PluginTagToContent("hparams"))
    except KeyError:  # no hyperparameters written
        return points, False
