"""The benchmark end to end in its quick mode: every figure is present and sane (no timing asserts)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from core.train import PHASES

REPO = Path(__file__).resolve().parent.parent


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_quick_benchmark_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=850, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training step" in proc.stdout and str(out) in proc.stdout
    results = json.loads(out.read_text())

    meta = results["meta"]
    assert meta["quick"] is True and len(meta["loadavg_start"]) == 3 and len(meta["loadavg_end"]) == 3
    for precision, peak in results["peak"]["cpu"].items():
        assert precision in ("fp32", "bf16") and _positive(peak["flops_per_s"]), precision

    train = [r for r in results["train"] if r["device"] == "cpu"]
    assert [r["variant"] for r in train] == ["plain", "bf16", "bf16+compile"]
    assert train[0]["precision"] == "fp32" and train[0]["compile"] is False
    assert train[0]["speedup_vs_plain"] == 1.0
    for r in results["train"]:
        for key in ("s_per_iter", "images_per_s", "speedup_vs_plain", "step_flops", "achieved_flops_per_s",
                    "first_step_s"):
            assert _positive(r[key]), (r["variant"], key)
        assert r["images_per_s"] == pytest.approx(r["batch_size"] / r["s_per_iter"])
        assert 0 < r["mfu"] <= 1.5, (r["variant"], r["mfu"])
        assert r["mfu_against"] == r["precision"]
        breakdown = r["breakdown_s"]
        for phase in (*PHASES, "student_forward_backward", "data_loading"):
            assert breakdown[phase] >= 0, phase
        for phase in ("augment", "teacher", "student_forward", "backward", "optimizer"):
            assert breakdown[phase] > 0, phase
        assert r["memory"]["peak_bytes"] > 0 and r["memory"]["delta_bytes"] >= 0
        assert len(r["loadavg"]) == 3
    assert train[0]["flops_by_phase"]["backward"] > train[0]["flops_by_phase"]["student_forward"] > 0

    knn = results["knn"]
    assert knn["extraction"][0]["variant"] == "plain"
    assert all(_positive(e["images_per_s"]) for e in knn["extraction"])
    c = knn["classification"]
    assert _positive(c["seconds"]) and c["memory_rows"] > c["query_rows"] > 0
    chunks = knn["chunk_memory"]
    assert [m["chunk_size"] for m in chunks] == sorted(m["chunk_size"] for m in chunks)
    assert all(_positive(m["seconds"]) and m["memory"]["delta_bytes"] >= 0 for m in chunks)

    study = results["study"]
    if "skipped" not in study:
        assert study["runs"] == 2 and len(study["per_run"]) == 2
        assert _positive(study["wall_s"]) and _positive(study["train_s"]) and study["wall_s"] > study["train_s"]
        assert study["grid_runs"] == 1000 and study["dry_run_ok"] and _positive(study["dry_run_s"])
