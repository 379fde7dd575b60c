"""The benchmark end to end in its quick mode: every figure is present and sane (no timing asserts)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.measure import SECTIONS
from core.train import PHASES

REPO = Path(__file__).resolve().parents[2]


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _quick_section(tmp_path, section: str):
    """``benchmarks.run --quick --only SECTION`` in its own process: (the process, its figures)."""
    out = tmp_path / f"{section}.json"
    command = [sys.executable, "-m", "benchmarks.run", "--quick", "--only", section, "--out", str(out)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text())[section]


@pytest.mark.slow
def test_quick_benchmark_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    # every section but gpu, which test_gpu_section_runs_its_code_on_cpu_with_a_tiny_vit runs alone
    sections = ",".join(s for s in SECTIONS if s != "gpu")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--only", sections, "--out", str(out)],
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
        # achieved over the measured peak: both are timings on a possibly loaded machine, so no upper
        # bound (a peak measured while another process ran can read below a step measured after)
        assert _positive(r["mfu"]) and r["peak_flops_per_s"] == results["peak"]["cpu"][r["precision"]]["flops_per_s"]
        assert r["mfu_against"] == r["precision"]
        breakdown = r["breakdown_s"]
        for phase in (*PHASES, "student_forward_backward", "data_loading"):
            assert breakdown[phase] >= 0, phase
        for phase in ("augment", "teacher", "student_forward", "backward", "optimizer"):
            assert breakdown[phase] > 0, phase
        assert r["memory"]["peak_bytes"] > 0 and r["memory"]["delta_bytes"] >= 0
        assert len(r["loadavg"]) == 3
    assert train[0]["flops_by_phase"]["backward"] > train[0]["flops_by_phase"]["student_forward"] > 0

    ops = results["ops"]["variants"]
    assert list(ops) == ["plain", "bf16 (profile)"]
    for v in ops.values():
        assert all(ms >= 0 for ms in v["by_kind_ms"].values())
        assert v["total_ms"] == pytest.approx(sum(v["by_kind_ms"].values()))
        assert v["by_kind_ms"]["matmul"] > 0 and _positive(v["matmul_flops_per_s"])
        assert v["ops"] and all(o["op"].startswith("aten::") for o in v["ops"])
        line = v["per_batch"]  # least squares with an intercept: the residuals sum to zero
        assert len(line["batch_sizes"]) == len(line["s_per_iter"]) == 3 and all(map(_positive, line["s_per_iter"]))
        residuals = [t - line["fixed_s"] - line["per_image_s"] * b for b, t in zip(line["batch_sizes"], line["s_per_iter"])]
        assert sum(residuals) == pytest.approx(0.0, abs=1e-9)
    # the same linear layers in both; the profile's attention adds its two matmuls (q k^T, weights v)
    assert ops["bf16 (profile)"]["matmul_flops_per_step"] > ops["plain"]["matmul_flops_per_step"] > 0
    assert "where the step's time goes" in proc.stdout and "the most its eager step can gain" in proc.stdout

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


def test_quick_loader_benchmark_prints_its_figures(tmp_path):
    proc, r = _quick_section(tmp_path, "loader")
    assert r["images"] == 8 and r["views"] == "2x224 + 8x96" and r["image"].startswith("500x375 JPEG")
    for key in ("images_per_s_per_core", "images_per_s_per_core_best", "images_per_wall_s", "decode_per_s",
                "jpeg_kb", "crop_ms_per_image"):
        assert _positive(r[key]), key
    assert r["decode_per_s"] > r["images_per_s_per_core"]  # decoding is part of an item's cost
    rate = r["step_rates_per_gpu"][r["assumed_step_rate"]]
    assert rate == 1007 and r["workers_needed"] == math.ceil(8 * rate / r["images_per_s_per_core"])
    assert f"needs {r['workers_needed']} loader workers" in proc.stdout
    assert f"= {r['workers_needed']}" in proc.stdout and "img/s per core" in proc.stdout


def test_gpu_section_runs_its_code_on_cpu_with_a_tiny_vit(tmp_path):
    proc, r = _quick_section(tmp_path, "gpu")
    assert r["peak"]["source"] == "measured matmul"  # no data-sheet peak for a CPU
    assert r["peak"]["flops_per_s"] == r["peak"]["measured_matmul_flops_per_s"] > 0
    assert [(s["variant"], s["precision"]) for s in r["steps"]] == [("bf16", "bf16"), ("fp16", "fp16")]
    for s in r["steps"]:
        assert s["images_per_s"] == pytest.approx(s["batch_size"] / s["s_per_iter"]) and s["batch_size"] == 4
        assert s["mfu"] == pytest.approx(s["step_flops"] / s["s_per_iter"] / r["peak"]["flops_per_s"])
        assert 0 < s["mfu"] <= 1.5 and s["memory"]["peak_bytes"] > 0
        assert _positive(s["loader_images_per_s"]) and s["loader_workers"] == 1
        assert s["loader_keeps_up"] == (s["loader_images_per_s"] >= s["images_per_s"])
    assert "2x32+2x16 b4" in proc.stdout and "loader keeps up" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="refused only where there is no GPU")
def test_gpu_section_without_a_gpu_is_refused_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--only", "gpu"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "--only gpu" in proc.stderr and "--quick" in proc.stderr
