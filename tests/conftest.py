"""Shared fixtures: tiny study files for the studies engine, and a real single-node SLURM."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import tomli_w

from tests.helpers import MICRO_SET

SLURM_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "slurm"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """The suite runs on two pytest-xdist workers (``-n 2 --dist loadgroup``, pyproject.toml):
    each module's tests on one worker, so that a module's fixture (a real study, run once for its
    tests) runs once; and every SLURM test on the same worker, the one that starts the local SLURM
    for its session and stops it at its end."""
    for item in items:
        group = "slurm" if item.get_closest_marker("slurm") else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def write_study(tmp_path):
    """``write_study(name, axes, set=..., resources=..., **top_level)`` -> path of a study file
    whose runs are micro trainings (MICRO_SET, less what the axes sweep)."""

    def write(name: str, axes: list[dict], set: dict | None = None, resources: dict | None = None,
              **top) -> Path:
        swept = {a["key"] for a in axes if "key" in a}
        swept |= {k for a in axes for v in a["values"] if isinstance(v, dict) for k in v["set"]}
        base = {k: v for k, v in {**MICRO_SET, **(set or {})}.items() if k not in swept}
        study = {"description": f"test study {name}", **top, "set": base, "axes": axes}
        if resources:
            study["profiles"] = {"tiny": {"resources": resources}}
        path = tmp_path / f"{name}.toml"
        path.write_text(tomli_w.dumps(study))
        return path

    return write


@pytest.fixture(scope="session")
def slurm_partition():
    """Start the local single-node SLURM (../shared/slurm) for the session; its partition name."""
    script = SLURM_DIR / "start-local-slurm.sh"
    if not script.exists() or os.geteuid() != 0:
        pytest.skip(f"needs root and {script}")
    conf = os.path.join(os.environ.get("SLURM_LOCAL_DIR", "/tmp/slurm-local"), "etc", "slurm.conf")
    already_up = shutil.which("sinfo") is not None and subprocess.run(
        ["sinfo"], check=False, capture_output=True, env={**os.environ, "SLURM_CONF": conf}).returncode == 0
    part = subprocess.run([str(script)], check=True, capture_output=True, text=True).stdout.strip()
    os.environ["SLURM_CONF"] = conf
    assert shutil.which("sbatch"), "start-local-slurm.sh did not install sbatch"
    yield part
    if not already_up:  # leave a cluster someone else started running
        subprocess.run([str(SLURM_DIR / "stop-local-slurm.sh")], check=False, capture_output=True)


@pytest.fixture(autouse=True, scope="session")
def hand_seed_noise():
    """The reports' tests pin their verdicts to a hand noise figure for tiny (0.6 points over 3
    seeds: a one-seed difference must exceed 4.3027 x 0.6 x sqrt(2) = 3.651), not to the measured
    one in reports/noise.py, which changes whenever tiny is measured again."""
    from reports import noise
    with pytest.MonkeyPatch.context() as patch:  # session-wide: module-scoped reports use it too
        patch.setitem(noise.SEED_NOISE, "tiny", noise.NoiseFigure(std=0.6, seeds=3, command="by hand"))
        yield
