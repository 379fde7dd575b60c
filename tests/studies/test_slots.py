"""Local run slots (studies.slots): real processes, real flocks, a real SIGKILL."""
from __future__ import annotations

import select
import subprocess
import sys
from pathlib import Path

from studies.slots import slot_files

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\nfrom studies.slots import acquire\nacquire(tuple(sys.argv[1:]))\n"
        "print('holding', flush=True)\ntime.sleep(120)\n")


def holder(files: tuple[str, ...]) -> subprocess.Popen:
    """A process that takes a slot, says so, and keeps it."""
    return subprocess.Popen([sys.executable, "-c", HOLD, *files], cwd=REPO, stdout=subprocess.PIPE, text=True)


def says_holding(proc: subprocess.Popen, within: float) -> bool:
    ready, _, _ = select.select([proc.stdout], [], [], within)
    return bool(ready) and proc.stdout.readline().strip() == "holding"


def test_n_slots_admit_n_processes_and_a_killed_holder_frees_its_slot(tmp_path):
    files = slot_files(tmp_path / "slots", 2)
    procs = [holder(files) for _ in range(2)]
    try:
        assert says_holding(procs[0], 30) and says_holding(procs[1], 30)
        procs.append(holder(files))
        assert not says_holding(procs[2], 3.0)  # both slots taken: the third waits
        procs[0].kill()  # SIGKILL: no clean-up code runs, the kernel drops the lock
        assert says_holding(procs[2], 30)  # long before the killed holder's 120 s would have ended
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
