"""Process-group setup from torchrun or SLURM environment variables, and row gathering.

Backend follows the device (NCCL needs GPUs; gloo on CPU), which avoids the reference code's
failure mode of initialising NCCL on CPU-only nodes.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from core.config import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistEnv:
    """Join the process group described by the environment, or run as a single process.

    torchrun's RANK/WORLD_SIZE/LOCAL_RANK come first; otherwise SLURM's SLURM_PROCID/SLURM_NTASKS/
    SLURM_LOCALID (the tasks of ``srun``: a study's multi-task job, or a hand-written script), with
    the first node of the job as master and a port derived from the job id, so that every task
    computes the same rendezvous without talking and a requeued job (same id) meets there again.
    MASTER_ADDR and MASTER_PORT already set win (a study's ``setup`` lines may export them).
    """
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    elif int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        local = int(env.get("SLURM_LOCALID", 0))
        env.setdefault("MASTER_ADDR", _first_slurm_host())
        env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
    else:
        rank, world, local = 0, 1, 0
    if torch.cuda.is_available():
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank,
                                world_size=world)
    return DistEnv(rank, world, local, device)


def _first_slurm_host() -> str:
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST", "")
    if not nodelist:
        raise RuntimeError("SLURM_NTASKS > 1 but SLURM_JOB_NODELIST is unset: launch with srun, "
                           "or set MASTER_ADDR and MASTER_PORT yourself")
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0]


def sync_batchnorm(model: nn.Module, env: DistEnv) -> nn.Module:
    """BatchNorm layers (``head.use_bn``) made to normalise over the global batch, as the
    reference does, when several processes train one run; unsynchronised statistics would give
    every rank a different normalisation. torch synchronises BatchNorm on GPUs only, so a
    multi-process CPU run with BatchNorm is refused before training."""
    if env.world_size == 1 or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    if env.device.type == "cpu":
        raise ConfigError(f"head.use_bn = true with {env.world_size} CPU processes: torch's SyncBatchNorm "
                          "needs GPUs, and per-rank statistics would differ; use head.use_bn = false "
                          "or one process")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def all_reduce_mean(values: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def gather_strided_rows(rows: Tensor, total: int, env: DistEnv) -> Tensor:
    """Reassemble rows that rank r computed for indices r, r + W, r + 2W, ... into index order."""
    if env.world_size == 1:
        return rows
    per_rank = -(-total // env.world_size)
    padded = rows.new_zeros((per_rank,) + rows.shape[1:])
    padded[: rows.shape[0]] = rows
    gathered = [torch.empty_like(padded) for _ in range(env.world_size)]
    dist.all_gather(gathered, padded)
    return torch.stack(gathered, dim=1).flatten(0, 1)[:total]
