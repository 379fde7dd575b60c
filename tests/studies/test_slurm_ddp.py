"""One run as two processes (``tasks_per_node = 2``, gloo on CPU) on the local single-node SLURM of
../shared/slurm: it trains as one DDP run, exactly as torchrun's two processes train the same
config; only rank 0 records it; preempted by a job of the ``urgent`` partition, it checkpoints,
is requeued and resumes, and ends with the metrics of the uninterrupted run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from optuna.trial import TrialState

from studies import plan, spec
from studies.run import main
from tests.helpers import MICRO_SET
from tests.helpers import free_port
from tests.helpers import REPO, SLOW_EPOCHS, by_label, checkpoint_epoch, epoch_steps, sacred, trials, \
    wait_for

pytestmark = pytest.mark.slurm

PREEMPT_PARTITION = os.environ.get("SLURM_LOCAL_PREEMPT_PARTITION", "urgent")
# 16 iterations per epoch and 10 epochs (about a second each): a preemption sent once the run has
# checkpointed 2 epochs lands with 8 still to train, whatever the load, and torchrun's reference
# of the same config stays under a minute.
DDP_SET = {**MICRO_SET, **SLOW_EPOCHS, "epochs": 10}
TWO_TASKS = {"tasks_per_node": 2, "cpus_per_task": 1, "mem_gb": 2, "time_min": 10}
RESULT_KEYS = ("knn_top1", "knn_top5", "student_knn_top1", "student_knn_top5", "loss", "target_entropy", "kl",
               "student_entropy", "collapse")
# each rank writes its result to a file of its own: torchrun's captured stdout once held no line of
# rank 0's (cause not found, exit code 0, the run complete), and a file does not depend on it
_TORCHRUN_SCRIPT = """
import json, sys
from pathlib import Path
import torch.distributed as dist
from core.config import DINOConfig
from core.train import train
result = train(DINOConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2], progress=False)
Path(sys.argv[3], f"result{dist.get_rank()}.json").write_text(json.dumps(result))
"""


def write_ddp_study(folder: Path, name: str, **overrides) -> Path:
    """A study of one two-task run of ``DDP_SET`` with ``overrides``."""
    study = {"description": "one run as two DDP processes", "set": {**DDP_SET, **overrides},
             "axes": [{"name": "run", "values": [{"label": "ddp", "set": {}}]}],
             "profiles": {"tiny": {"resources": TWO_TASKS}}}
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(study))
    return path


@pytest.fixture(scope="module")
def torchrun_result(tmp_path_factory):
    """Rank 0's result of the studies' config trained by two torchrun processes (one thread each,
    as each SLURM task has one CPU)."""
    folder = tmp_path_factory.mktemp("torchrun")
    (run,) = plan.expand(spec.load(str(write_ddp_study(folder, "reference"))), "tiny")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", str(free_port()), "--no-python", sys.executable, "-c", _TORCHRUN_SCRIPT,
                          json.dumps(run.config.to_dict()), str(folder / "run"), str(folder)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO,
                         timeout=600)
    result = folder / "result0.json"
    assert out.returncode == 0 and result.is_file(), out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads(result.read_text())


def launch(path: Path, results: Path, partition: str, capsys) -> list[str]:
    """Submit the study; the argv that reruns it."""
    argv = [str(path), "--results", str(results), "--cluster", "slurm", "--partition", partition]
    assert main(argv) == 0
    assert "submitted 1 run(s)" in capsys.readouterr().out
    return argv


def settle(argv: list[str], results: Path, name: str):
    """Wait until the run's last attempt has ended (a rerun records a job found dead); that attempt."""
    def ended():
        main(argv)
        return all(t.state != TrialState.RUNNING for t in trials(results, name))

    wait_for(ended, 600, "the two-task job to end")
    (attempts,) = by_label(results, name).values()
    return attempts[-1]


def assert_same_result(trial, reference: dict) -> None:
    record = sacred(trial, "run.json")
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("error")
    assert record["status"] == "COMPLETED"
    for key in RESULT_KEYS:  # bit for bit: gloo's sum of two ranks does not depend on their order
        assert trial.user_attrs[key] == record["result"][key] == reference[key], key


def test_two_tasks_train_one_ddp_run_as_torchrun_does(slurm_partition, torchrun_result, tmp_path, capsys):
    results = tmp_path / "results"
    argv = launch(write_ddp_study(tmp_path, "ddp"), results, slurm_partition, capsys)
    trial = settle(argv, results, "ddp")
    assert_same_result(trial, torchrun_result)

    job = trial.user_attrs["job_id"]
    folder = Path(trial.user_attrs["submitit_dir"])
    script = (folder / f"{job}_submission.sh").read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "--kill-on-bad-exit=1" in script
    def ended_logs():  # rank 0 reports to the ledger before its task has ended
        logs = {rank: (folder / f"{job}_{rank}_log.out").read_text() for rank in (0, 1)}
        return logs if all("Job completed successfully" in log for log in logs.values()) else None

    logs = wait_for(ended_logs, 120, "both tasks' logs to end")
    for rank, log in logs.items():  # each task is its own SLURM task of the one job
        assert f"global_rank={rank}(2)" in log and "Job completed successfully" in log
    # only rank 0 trains in the open: it holds the run folder, records and reports
    assert "training in" in logs[0] and "training in" not in logs[1]
    assert [p.name for p in (results / "sacred").iterdir() if p.name != "_sources"] == [trial.user_attrs["run_id"]]
    info = sacred(trial, "info.json")
    assert info["slurm"]["SLURM_NTASKS"] == "2" and info["cpus"] == 2  # two tasks of one CPU
    assert [s["status"] for s in info["segments"]] == ["COMPLETED"]


def test_preempted_two_task_run_resumes_and_ends_as_if_uninterrupted(slurm_partition, torchrun_result, tmp_path,
                                                                     capsys):
    if subprocess.run(["sinfo", "-h", "-p", PREEMPT_PARTITION], capture_output=True, text=True).stdout == "":
        pytest.skip(f"the local SLURM has no {PREEMPT_PARTITION} partition")
    results = tmp_path / "results"
    # each rank loads its images in a worker process, as a GPU profile's data.num_workers do: SLURM
    # signals the workers too, and they must neither requeue the job again nor fail it by dying
    study = write_ddp_study(tmp_path, "preempted", **{"data.num_workers": 1})
    argv = launch(study, results, slurm_partition, capsys)
    (trial,) = trials(results, "preempted")
    wait_for(lambda: checkpoint_epoch(trial.user_attrs["run_dir"]) >= 2, 300, "a checkpoint of 2 epochs")
    # A job of the higher-priority partition that needs the whole node: SLURM preempts the run
    # (USR2 to both tasks, then requeue), as a cluster reclaims nodes for urgent work.
    subprocess.run(["sbatch", "--parsable", "-p", PREEMPT_PARTITION, "--exclusive", "-n", "1", "--mem=100M",
                    "-o", "/dev/null", "--wrap", "sleep 1"], check=True, capture_output=True)
    trial = settle(argv, results, "preempted")
    assert_same_result(trial, torchrun_result)

    info = sacred(trial, "info.json")
    assert [s["status"] for s in info["segments"]] == ["REQUEUED", "COMPLETED"]
    assert info["slurm"]["SLURM_RESTART_COUNT"] == "1"
    steps = epoch_steps(trial)
    assert sorted(set(steps)) == list(range(1, 11)) and steps.count(1) == 1  # resumed, not restarted
    assert len(trials(results, "preempted")) == 1  # the same attempt continued
