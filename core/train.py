"""One whole DINO training: data, student and teacher, the loop, checkpoints, k-NN at the end.

``train(config, out_dir, callback)`` is the library entry; ``python -m core.train --profile tiny``
runs one training from the shell. Metrics leave through ``callback(kind, step, metrics)`` with
``kind`` one of ``"iteration"`` (every ``log_every`` iterations, step = global iteration),
``"epoch"`` (step = epochs completed) and ``"knn"`` (step = epochs completed), so ``core/``
never imports a tracker. A restarted ``train`` on the same ``out_dir`` resumes from its
checkpoint and ends with exactly the metrics of an uninterrupted run.

The checkpoint also holds the ``"epoch"`` and ``"knn"`` records of its epochs, and a resumed
``train`` gives them to its callback again first: a tracker flushes on its own clock (sacred every
10 s), and a run killed between a checkpoint and a flush would otherwise lose them from every record.
A run that collapses stops early (``core.early_stop``), decided from those same epoch records.
"""
from __future__ import annotations

import json
import math
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Callable, Mapping, NamedTuple

import numpy as np
import tomli_w
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from core import cli, live, preflight, progress as shown
from core.augment import MultiCropAugmentation
from core.checkpoint import CheckpointError, default_run_dir, identity, load_checkpoint, previous_path, \
    save_checkpoint
from core.collapse import CollapseRule, stopped_mark
from core.config import ConfigError, DINOConfig
from core.data import DataNotFoundError, DataSplits, build_data
from core.distributed import DistEnv, all_reduce_mean, init_distributed, sync_batchnorm
from core.early_stop import EarlyStop
from core.evaluate import knn_evaluate
from core.loss import DINOLoss
from core.model import build_network, check_backbone
from core.optim import clip_gradients_per_parameter, param_groups
from core.precision import autocast, prepare
from core.profiles import label as profile_label, profile_config
from core.schedules import Schedules
from core.teacher import teacher_update

Callback = Callable[[str, int, Mapping[str, float]], None]
Timer = Callable[[str], AbstractContextManager]
CHECKPOINT = "checkpoint.pth"
# The phases of ``Trainer.step``, in order, as a timer hook sees them.
PHASES = ("augment", "teacher", "student_forward", "loss", "backward", "optimizer", "ema")


class StepStats(NamedTuple):
    """What one training step measured, as 0-d tensors: the loss H(P_t, P_s) = h(P_t) + KL, and
    the student's entropy h(P_s), which a student-temperature sweep moves."""

    loss: torch.Tensor
    target_entropy: torch.Tensor
    kl: torch.Tensor
    student_entropy: torch.Tensor


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops instead of corrupting the checkpoint."""


class ResumeMismatchError(RuntimeError):
    """The run folder holds a checkpoint of a different config."""


def train(config: DINOConfig, out_dir: str | Path, callback: Callback | None = None,
          progress: bool = True) -> dict[str, float | str]:
    """Train (or resume) the run in ``out_dir`` and return its final metrics, the k-NN accuracy
    of teacher and student, its collapse verdict (``core.collapse``) and, if it collapsed and
    stopped early, ``stopped_epoch``. ``progress``: a bar on a terminal, else lines for a log."""
    started = time.time()  # the run's own time: data, models, training and evaluation
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"the run folder {out_dir} is a file; give a folder (--out DIR)")
    line_seconds = shown.line_seconds()
    env = init_distributed()
    preflight.check(config, env.world_size)  # before anything is loaded
    check_backbone(config.backbone)
    data = build_data(config.data, config.crops)
    run = Trainer(config, data, env)  # everything that can refuse the config, before the folder exists
    out_dir.mkdir(parents=True, exist_ok=True)
    start_epoch = run.resume(out_dir / CHECKPOINT)
    if start_epoch and env.is_main:
        print(f"resumed from checkpoint at epoch {start_epoch}", flush=True)
    emit = run.recorder(callback or (lambda kind, step, metrics: None))
    mode = shown.mode(progress, env.is_main)
    stopper = EarlyStop(config)
    knn: dict[str, float] = {}
    epoch_metrics: dict[str, float] = {}
    stop = run.final.get("stopped", {})  # resumed after an early stop: nothing left to train
    for epoch in range(start_epoch, config.epochs if not run.final else start_epoch):
        epoch_metrics = run.train_epoch(epoch, emit, mode, line_seconds)
        emit("epoch", epoch + 1, epoch_metrics)
        if env.is_main:
            print(shown.summary_line(epoch + 1, config.epochs, epoch_metrics), flush=True)
        if collapse := stopper.verdict(run.records):
            stop = {"epoch": epoch + 1, "collapse": collapse}
        last = epoch + 1 == config.epochs or bool(stop)
        if last or (config.eval.every_epochs and (epoch + 1) % config.eval.every_epochs == 0):
            knn = run.evaluate(mode == shown.BAR)
            emit("knn", epoch + 1, knn)
        run.save(out_dir / CHECKPOINT, epoch + 1,
                 {"knn": knn, "metrics": epoch_metrics, **({"stopped": stop} if stop else {})} if last else {})
        if stop:
            break
    if not knn:  # resumed after the last epoch (or the stop): the result is in the checkpoint
        knn, epoch_metrics = run.final["knn"], run.final["metrics"]
    if stop and env.is_main:
        print(stopped_mark(stop["collapse"], [stop["epoch"]], config.epochs), flush=True)
    final = {k: epoch_metrics[k] for k in ("loss", "target_entropy", "kl", "student_entropy") if k in epoch_metrics}
    # the run decides its own collapse verdict, so the ledger, the dashboard and reports agree
    verdict = CollapseRule().classify(final.get("target_entropy", math.nan), final.get("kl", math.nan),
                                      config.head.out_dim)
    return {**{_result_name(k): v for k, v in knn.items()}, **final, "collapse": verdict, "epochs": config.epochs,
            **({"stopped_epoch": stop["epoch"]} if stop else {}), "train_seconds": time.time() - started}


class Trainer:
    """The engine of one training: models, loss, optimizer, schedules and data order, with the
    step, the epoch, the evaluation and the checkpoint as methods; ``train`` drives it, and the
    benchmarks and tests drive its ``step`` directly."""

    def __init__(self, config: DINOConfig, data: DataSplits, env: DistEnv):
        self.config, self.data, self.env = config, data, env
        device = env.device
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        student = sync_batchnorm(build_network(config.backbone, config.head, data.channels,
                                               config.backbone.drop_path_rate), env).to(device)
        self.teacher = sync_batchnorm(build_network(config.backbone, config.head, data.channels, 0.0), env).to(device)
        self.teacher.load_state_dict(student.state_dict())
        self.teacher.requires_grad_(False)
        self.student_module = student
        self._autocast = autocast(config.precision, device)
        prepare(student, config.precision, device)
        prepare(self.teacher, config.precision, device)
        if config.compile:  # in place: state_dict keys and the modules' identities are unchanged
            student.compile()
            self.teacher.compile()
        self.student = (DistributedDataParallel(student, device_ids=[device] if device.type == "cuda" else None)
                        if env.world_size > 1 else student)
        self.loss = DINOLoss(config.head.out_dim, config.loss.student_temp,
                             config.loss.center_momentum, config.loss.centering).to(device)
        self.strategy = teacher_update(config.teacher.update)
        # one fused kernel per parameter instead of ~10 ops each (CPU has fused AdamW since torch 2.4)
        self.optimizer = torch.optim.AdamW(param_groups(student), fused=device.type in ("cuda", "cpu"))
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")

        self.sampler = DistributedSampler(data.train, num_replicas=env.world_size, rank=env.rank,
                                          shuffle=True, seed=config.seed, drop_last=True)
        per_rank = config.batch_size // env.world_size
        # workers seed themselves from torch's RNG when they start: new workers every epoch see the
        # per-epoch seeding (seed_epoch), so a resumed run crops exactly as an uninterrupted one
        self.loader = DataLoader(data.train, batch_size=per_rank, sampler=self.sampler, drop_last=True,
                                 num_workers=config.data.num_workers, pin_memory=device.type == "cuda",
                                 persistent_workers=False)
        if len(self.loader) == 0:
            raise ConfigError(f"batch_size={config.batch_size} exceeds the {len(data.train)} training "
                              "images: lower batch_size or raise data.train_subset")
        self.iters_per_epoch = len(self.loader)
        self.schedules = Schedules(config, self.iters_per_epoch)
        self.augment = MultiCropAugmentation(config.crops, data.mean, data.std)
        self.augment_rng = torch.Generator()
        self.final: dict[str, dict[str, float]] = {}  # k-NN and metrics of a finished run
        self.records: list[tuple[str, int, dict[str, float]]] = []  # "epoch" and "knn" ones so far
        self.seed_epoch(0)

    def seed_epoch(self, epoch: int) -> None:
        """Seed this rank's random streams for ``epoch`` from (seed, rank, epoch) alone.

        The augmentation's generator and torch's global RNG (drop-path, loader workers' seeds)
        then differ per rank and per epoch, and a run resumed at an epoch boundary, on any rank,
        draws exactly what it would have drawn without stopping: nothing needs saving.
        """
        augment, global_ = _stream_seeds(self.config.seed, self.env.rank, epoch)
        self.augment_rng.manual_seed(augment)
        torch.manual_seed(global_)

    def train_epoch(self, epoch: int, emit: Callback, show: str, line_seconds: float) -> dict[str, float]:
        config, device = self.config, self.env.device
        self.sampler.set_epoch(epoch)
        self.seed_epoch(epoch)
        self.student.train()
        self.strategy.on_epoch_start(self.teacher, self.student_module)
        teacher_temp = self.schedules.teacher_temp[epoch]
        sums = torch.zeros(len(StepStats._fields), device=device)
        started = time.time()
        batches = shown.EpochProgress(self.loader, epoch, config.epochs, show, line_seconds)
        for i, (images, _) in enumerate(batches):
            it = epoch * self.iters_per_epoch + i
            stats = torch.stack(self.step(images, epoch, it))
            sums += stats
            logged = it % config.log_every == 0
            if logged or batches.due():
                values = dict(zip(StepStats._fields, stats.tolist()))
                batches.show(i, values)
            if logged:
                lr, wd = self.schedules.lr[it], self.schedules.weight_decay[it]
                emit("iteration", it, {**values, "lr": lr, "weight_decay": wd,
                                       "momentum": self.schedules.momentum[it], "teacher_temp": teacher_temp,
                                       "center_norm": self.loss.center.norm().item()})
        last = (epoch + 1) * self.iters_per_epoch - 1
        lr, wd, momentum = (self.schedules.lr[last], self.schedules.weight_decay[last],
                            self.schedules.momentum[last])
        means = dict(zip(StepStats._fields, all_reduce_mean(sums / self.iters_per_epoch).tolist()))
        seconds = time.time() - started
        metrics = {**means, "lr": lr, "weight_decay": wd, "momentum": momentum, "teacher_temp": teacher_temp,
                   "center_norm": self.loss.center.norm().item(), "epoch_seconds": seconds,
                   "images_per_second": self.iters_per_epoch * self.config.batch_size / seconds}
        if not config.head.norm_last_layer:  # a learned gain g_k turns tau into tau / g_k
            metrics["effective_student_temp"] = config.loss.student_temp / self.student_module.head.mean_gain()
            metrics["effective_teacher_temp"] = teacher_temp / self.teacher.head.mean_gain()
        return metrics

    def step(self, images: torch.Tensor, epoch: int, it: int, timer: Timer | None = None) -> StepStats:
        """One training iteration on a uint8 batch: augment, teacher and student forward, loss,
        backward, optimizer step (with clipping), teacher update. Returns what it measured,
        detached (no device sync until read).

        ``timer(phase)`` (optional) returns a context manager entered around each phase, named in
        ``PHASES``; ``benchmarks/`` times the trainer's own step with it. Without a timer the
        step never synchronises a GPU except for the one finiteness check of the loss.
        """
        phase = timer or _untimed
        lr, wd = self.schedules.lr[it], self.schedules.weight_decay[it]
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            group["weight_decay"] = wd if group["regularized"] else 0.0
        with phase("augment"):
            views = self.augment(_to_device(images, self.env.device), self.augment_rng)
        with phase("teacher"), self._autocast(), torch.no_grad():
            teacher_out = self.teacher(views[:2])
        with phase("student_forward"), self._autocast():
            student_out = self.student(views)
        with phase("loss"):
            loss = self.loss(student_out, teacher_out, self.schedules.teacher_temp[epoch])
            if not math.isfinite(loss.item()):
                raise NonFiniteLossError(
                    f"loss is {loss.item()} at epoch {epoch + 1}, iteration {it}: training stopped. "
                    "Lower optim.lr, raise optim.warmup_epochs, or use precision = 'fp32' / 'bf16' "
                    "instead of 'fp16'.")
        with phase("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        with phase("optimizer"):
            if self.config.optim.clip_grad:
                self.scaler.unscale_(self.optimizer)
                clip_gradients_per_parameter(self.student_module, self.config.optim.clip_grad)
            if it < self.schedules.freeze_last_layer_iters:
                for p in self.student_module.head.last_layer.parameters():
                    p.grad = None
            self.strategy.before_step(self.teacher, self.student_module)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        with phase("ema"):
            self.strategy.after_step(self.teacher, self.student_module, self.schedules.momentum[it])
        return StepStats(loss.detach(), self.loss.target_entropy, self.loss.kl, self.loss.student_entropy)

    def evaluate(self, show: bool) -> dict[str, float]:
        """Weighted k-NN of the teacher's backbone features (the paper's number) and of the
        student's (``student_top1``...): a previous-epoch teacher is one epoch old and a slow EMA
        lags, so only both together compare teacher-update strategies like with like."""
        teacher = knn_evaluate(self.teacher.backbone, self.data, self.config, self.env, self._autocast, show)
        student = knn_evaluate(self.student_module.backbone, self.data, self.config, self.env, self._autocast, show)
        return {**teacher, **{f"student_{k}": v for k, v in student.items()}}

    def recorder(self, callback: Callback) -> Callback:
        """``callback``, given the records a resumed checkpoint holds first, and wrapped so that
        the next checkpoints hold the per-epoch ones emitted from now on too."""
        for kind, step, metrics in self.records:
            callback(kind, step, metrics)

        def emit(kind: str, step: int, metrics: Mapping[str, float]) -> None:
            if kind in ("epoch", "knn"):
                self.records.append((kind, step, dict(metrics)))
            callback(kind, step, metrics)
        return emit

    # -- checkpoints ------------------------------------------------------------------------------
    def save(self, path: Path, epochs_done: int, final: dict[str, dict[str, float]]) -> None:
        if not self.env.is_main:
            return
        state = {
            "config": json.dumps(self.config.to_dict(), sort_keys=True),
            "epoch": epochs_done,
            "iteration": epochs_done * self.iters_per_epoch,
            "student": self.student_module.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "loss": self.loss.state_dict(),
            "scaler": self.scaler.state_dict(),
            "final": final,
            "records": self.records,
        }
        save_checkpoint(path, state)

    def resume(self, path: Path) -> int:
        """Restore a checkpoint if ``path`` holds one; return the first epoch still to train."""
        state = load_checkpoint(path)
        if state is None:
            return 0
        if identity(json.loads(state["config"])) != identity(self.config.to_dict()):
            raise ResumeMismatchError(
                f"{path.parent} holds a checkpoint of a different config; resume with the same config, "
                f"give this run a new output folder, or start over with rm {path} {previous_path(path)}")
        self.student_module.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loss.load_state_dict(state["loss"])
        self.scaler.load_state_dict(state["scaler"])
        self.final = state["final"]
        self.records = list(state.get("records", []))  # none in a checkpoint from before they were kept
        return int(state["epoch"])


def _stream_seeds(seed: int, rank: int, epoch: int) -> tuple[int, int]:
    """Two independent 63-bit seeds (augmentation, global RNG) mixed from (seed, rank, epoch)."""
    state = np.random.SeedSequence([seed, rank, epoch]).generate_state(2, dtype=np.uint64)
    return int(state[0] >> 1), int(state[1] >> 1)


def _to_device(images: torch.Tensor | list[torch.Tensor], device: torch.device):
    """A uint8 batch, or the per-view batches of crops taken in the loader, on ``device``."""
    if isinstance(images, torch.Tensor):
        return images.to(device, non_blocking=True)
    return [view.to(device, non_blocking=True) for view in images]


def _untimed(phase: str) -> AbstractContextManager:
    return nullcontext()


def _result_name(evaluated: str) -> str:
    """An evaluation's name in the result: "top1" -> "knn_top1", "student_top1" ->
    "student_knn_top1"; the linear probe's ("linear_top1", "student_linear_top1") stay."""
    prefix = "student_" if evaluated.startswith("student_") else ""
    metric = evaluated[len(prefix):]
    return prefix + (metric if metric.startswith("linear_") else f"knn_{metric}")


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m core.train",
                                description="Train one DINO run and report its k-NN accuracy.")
    cli.add_profile(parser)
    cli.add_data(parser)
    cli.add_set(parser, "override a config value, e.g. --set teacher.momentum=0.99")
    parser.add_argument("--out", default=None,
                        help="run folder (default: runs/train/<profile>-<hash of the config>)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as TOML and exit without training")
    parser.add_argument("--tensorboard", metavar="DIR",
                        help="also draw the curves as TensorBoard event files in DIR/<run folder name>")
    try:
        args = parser.parse_args(argv)
        config = profile_config(args.profile, {**cli.data_overrides(args.data), **cli.assignments(args.set)})
        if args.print_config:
            print(tomli_w.dumps(config.to_dict()), end="")
            return 0
        out = Path(args.out) if args.out is not None else default_run_dir(profile_label(args.profile), config)
        if problem := cli.folder_problem(str(out) if args.out is None else args.out, "--out"):
            return cli.refuse(problem)
        if args.tensorboard is not None and (problem := cli.folder_problem(args.tensorboard, "--tensorboard")
                                             or live.missing("tensorboard")):
            return cli.refuse(f"--tensorboard {args.tensorboard}: {problem}")
        with live.drawn(Path(args.tensorboard) / out.name if args.tensorboard else None) as curves:
            result = train(config, out, curves)
    except (ConfigError, DataNotFoundError, ResumeMismatchError, CheckpointError) as error:
        return cli.refuse(str(error))  # refused before any work: one line, exit 2
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)  # the input was valid, the training diverged
        return 1
    if not (torch.distributed.is_initialized() and torch.distributed.get_rank() != 0):
        (out / "result.json").write_text(json.dumps(result, indent=2))  # rank 0 only under torchrun
        scores = (f"k-NN top-1 {result['knn_top1']:.2f}% (student {result['student_knn_top1']:.2f}%)  "
                  f"top-5 {result['knn_top5']:.2f}%" if "knn_top1" in result else result["knn_skipped"])
        print(f"{scores}  ({result['train_seconds']:.0f}s) -> {out / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
