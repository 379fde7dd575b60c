"""Two real CPU processes over gloo agree with one process."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from core.distributed import DistEnv, gather_strided_rows, sync_batchnorm
from core.loss import DINOLoss
from tests.helpers import free_port

K, BATCH = 16, 8


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6 * BATCH, K, generator=g), torch.randn(2 * BATCH, K, generator=g) + 2.0


def _worker(rank, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    student, teacher = _batch()
    half = BATCH // 2
    # rank r holds rows r*half..(r+1)*half of every view, keeping the views stacked
    mine_t = torch.cat([v[rank * half:(rank + 1) * half] for v in teacher.chunk(2)])
    mine_s = torch.cat([v[rank * half:(rank + 1) * half] for v in student.chunk(6)])
    loss = DINOLoss(K, center_momentum=0.9)
    loss(mine_s, mine_t, 0.04)
    rows = gather_strided_rows(torch.arange(rank, 7, 2).float().unsqueeze(1), 7,
                               DistEnv(rank, 2, rank, torch.device("cpu")))
    torch.save({"center": loss.center, "rows": rows}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_process_center_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    student, teacher = _batch()
    single = DINOLoss(K, center_momentum=0.9)
    single(student, teacher, 0.04)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(got["center"], single.center, atol=1e-6)
        assert got["rows"].squeeze(1).tolist() == list(range(7))  # strided shards back in order


def test_train_under_torchrun_two_processes(tmp_path):
    """A whole micro training as two gloo processes launched by torchrun, as on a cluster node."""
    script = (
        "import json, sys; from tests.helpers import micro_config; from core.train import train;"
        "r = train(micro_config(epochs=1), sys.argv[1], progress=False);"
        "import torch.distributed as d; print('RESULT', d.get_rank(), json.dumps(r))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", str(free_port()), "--no-python",
                          sys.executable, "-c", script, str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=os.getcwd(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
    assert len(results) == 2
    metrics = [json.loads(line.split(" ", 2)[2]) for line in results]
    for key in ("knn_top1", "knn_top5", "loss", "target_entropy"):  # all-reduced / gathered
        assert metrics[0][key] == metrics[1][key], key
    assert (tmp_path / "checkpoint.pth").exists()


_RESUME_SCRIPT = """
import hashlib, json, sys
import torch, torch.distributed as d
from core.train import CHECKPOINT, Trainer, train
from core.data import build_data
from core.distributed import init_distributed
from tests.helpers import micro_config

config = micro_config(epochs=2, precision="fp32")
straight, resumed = sys.argv[1], sys.argv[2]
a = train(config, straight, progress=False)

class Stop(Exception):
    pass

def stop_in_epoch_2(kind, step, metrics):
    if kind == "epoch" and step == 2:
        raise Stop  # epoch 2 trained but not saved: the checkpoint holds epoch 1
try:
    train(config, resumed, stop_in_epoch_2, progress=False)
except Stop:
    pass
run = Trainer(config, build_data(config.data), init_distributed())
start = run.resume(__import__("pathlib").Path(resumed) / CHECKPOINT)
run.seed_epoch(start)
images = torch.stack([run.data.train[i][0] for i in range(8)])  # the same images on both ranks
views = run.augment(images, run.augment_rng)
digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in views)).hexdigest()
b = train(config, resumed, progress=False)
print("RESULT", json.dumps([d.get_rank(), start, digest, a, b]))
"""


def test_two_process_resume_draws_per_rank_views_and_equals_no_stop(tmp_path):
    """After a resume each rank draws its own crops (not rank 0's), and the resumed two-process
    run ends with exactly the metrics of the uninterrupted one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", str(free_port()), "--no-python", sys.executable, "-c",
                          _RESUME_SCRIPT, str(tmp_path / "straight"), str(tmp_path / "resumed")],
                         capture_output=True, text=True, env=env, cwd=os.getcwd(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = sorted(json.loads(line.split(" ", 1)[1]) for line in out.stdout.splitlines()
                  if line.startswith("RESULT"))
    assert [r[0] for r in rows] == [0, 1]
    assert [r[1] for r in rows] == [1, 1]  # both resumed at epoch 1
    assert rows[0][2] != rows[1][2]  # the ranks' views differ after the resume
    for _, _, _, straight, resumed in rows:
        for key in ("knn_top1", "knn_top5", "student_knn_top1", "loss", "target_entropy", "kl"):
            assert resumed[key] == straight[key], key


def test_batchnorm_heads_synchronise_across_processes():
    from core.config import ConfigError, HeadConfig
    from core.model import DINOHead
    head = DINOHead(8, HeadConfig(hidden_dim=16, bottleneck_dim=8, out_dim=4, use_bn=True))
    assert sync_batchnorm(head, DistEnv(0, 1, 0, torch.device("cpu"))) is head  # one process: as is
    gpus = sync_batchnorm(head, DistEnv(0, 2, 0, torch.device("cuda", 0)))
    kinds = {type(m) for m in gpus.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm1d not in kinds
    with pytest.raises(ConfigError, match="head.use_bn"):  # torch syncs BatchNorm on GPUs only
        sync_batchnorm(head, DistEnv(0, 2, 0, torch.device("cpu")))
    plain = DINOHead(8, HeadConfig(hidden_dim=16, bottleneck_dim=8, out_dim=4))
    assert sync_batchnorm(plain, DistEnv(0, 2, 0, torch.device("cpu"))) is plain
