"""Two real CPU processes over gloo agree with one process."""
import json
import os
import socket
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from core.distributed import DistEnv, gather_strided_rows
from core.loss import DINOLoss

K, BATCH = 16, 8


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6 * BATCH, K, generator=g), torch.randn(2 * BATCH, K, generator=g) + 2.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
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
        "import json, sys; from tests.micro import micro_config; from core.train import train;"
        "r = train(micro_config(epochs=1), sys.argv[1], progress=False);"
        "import torch.distributed as d; print('RESULT', d.get_rank(), json.dumps(r))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", str(_free_port()), "--no-python",
                          sys.executable, "-c", script, str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=os.getcwd(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
    assert len(results) == 2
    metrics = [json.loads(line.split(" ", 2)[2]) for line in results]
    for key in ("knn_top1", "knn_top5", "loss", "target_entropy"):  # all-reduced / gathered
        assert metrics[0][key] == metrics[1][key], key
    assert (tmp_path / "checkpoint.pth").exists()
