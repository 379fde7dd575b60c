"""What SLURM is asked for: a run's sbatch settings, the script they make, and how many runs one
job array may hold.

The settings are built once, in submitit's own names, and used both to submit (the ``Slurm``
launcher, ``studies.launchers``) and to print the dry run's sbatch script (by submitit's own
generator), so the script shown is the script submitted. Arrays must be split at the cluster's
MaxArraySize, which submitit does not do.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Sequence

from submitit.slurm import slurm as submitit_slurm

from studies.resources import Resources


def slurm_parameters(resources: Resources, name: str) -> dict[str, Any]:
    """sbatch settings, in the names of submitit's sbatch generator: ``nodes`` x ``tasks`` tasks
    (one per GPU by default) make one DDP run, every knob of ``Resources`` passed through."""
    r = resources
    optional = {
        "gpus_per_node": r.gpus_per_node if not r.gres_requests_gpus else 0,
        "partition": r.partition, "account": r.account, "qos": r.qos, "constraint": r.constraint,
        "gres": r.gres, "exclusive": r.exclusive, "additional_parameters": dict(r.sbatch),
        "setup": [*_rendezvous_note(r), *r.setup],
        # a rank that stops (an error, a refused attempt on rank 0) must not leave the others
        # waiting in a collective until torch's 30-minute timeout
        "srun_args": [*(["--kill-on-bad-exit=1"] if r.world_size > 1 else []), *r.srun_args],
    }
    return {"job_name": name, "time": r.time_min, "nodes": r.nodes, "ntasks_per_node": r.tasks,
            "cpus_per_task": r.cpus_per_task, "mem": submitit_slurm._convert_mem(r.mem_gb),
            "signal_delay_s": r.signal_delay_s, "array_parallelism": r.array_parallelism,
            **{key: value for key, value in optional.items() if value}}  # unset: not in the script


def _rendezvous_note(r: Resources) -> list[str]:
    """Comment lines for the script of a multi-process run, where a reader looks for them: how
    its processes find each other (``core.distributed.init_distributed``)."""
    if r.world_size == 1:
        return []
    return [f"# one DDP run of {r.nodes} node(s) x {r.tasks} task(s); core.distributed reads SLURM_PROCID, "
            "SLURM_NTASKS, SLURM_LOCALID",
            "# rendezvous: MASTER_ADDR = the first node of $SLURM_JOB_NODELIST,",
            "#             MASTER_PORT = 20000 + $SLURM_JOB_ID % 20000 (export either in setup to choose it)"]


def sbatch_script(folder: Path, resources: Resources, name: str, count: int) -> str:
    """The sbatch script a submission of ``count`` runs (one job array) would use."""
    python = shlex.quote(sys.executable)
    holder = types.SimpleNamespace(python=python, folder=folder / "%j")
    command = submitit_slurm.SlurmExecutor._submitit_command_str.fget(holder)
    params = slurm_parameters(resources, name)
    if count > 1:
        params["map_count"] = count
    return submitit_slurm._make_sbatch_string(command=command, folder=folder / "%j", **params)


def max_array_size() -> int | None:
    """The cluster's MaxArraySize (array indices must stay below it); None if unknown."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else None


def chunks(items: Sequence[Any], size: int | None) -> list[Sequence[Any]]:
    """``items`` in consecutive pieces of at most ``size`` (all in one piece if ``size`` is None)."""
    size = size or len(items) or 1
    return [items[i:i + size] for i in range(0, len(items), size)]
