"""The reference k-NN numbers (a random network, raw pixels): measured once per distinct config of
a study's runs, kept in the results folder, never measured again by a rebuild. Hand-made folders
(tests/reports/by_hand.py); the stand-in for core.baselines gives a random network 54 + the patch
size and raw pixels 83.5, and one test measures a micro config for real.
"""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from core.baselines import baselines
from core.profiles import profile_config
from reports import build, references
from tests.reports.by_hand import K, MEASURED, measure_by_hand, write_results

PATCH = {"name": "patch", "key": "backbone.patch_size", "labels": ["16", "8", "5"], "paper": [74.5, 78.3, None],
         "set": {"16": {"backbone.patch_size": 16}, "8": {"backbone.patch_size": 8},
                 "5": {"backbone.patch_size": 4, "data.path": "/nonexistent/fashion-mnist"}}}
# A k-NN small enough to measure in seconds: 500 memory images, 200 queries, a 1-block ViT.
MICRO = {"backbone.embed_dim": 32, "backbone.depth": 1, "backbone.num_heads": 2, "eval.max_memory": 500,
         "eval.max_queries": 200, "precision": "fp32"}


def done(labels: dict, seed: int, top1: float) -> dict:
    return {"labels": labels, "seed": seed, "state": "done", "top1": top1, "top5": 95.0}


@pytest.fixture
def by_hand(monkeypatch):
    monkeypatch.setattr(references, "measure", measure_by_hand)
    MEASURED.clear()
    return MEASURED


def test_measured_once_per_config_and_never_by_a_rebuild(tmp_path, by_hand):
    """Patch 16 and 8 differ in shape; the "5" arm's data is missing, so it has no reference."""
    attempts = [done({"patch": p}, seed, 70.0) for p in ("16", "8", "5") for seed in (0, 1)]
    results = write_results(tmp_path / "patch", "patch", [PATCH], [0, 1], attempts)
    html = build.build_report("patch", results)
    assert sorted(c["backbone.patch_size"] for c in by_hand) == [4, 8, 16]  # each config once, for both seeds
    assert {c["seed"] for c in by_hand} == {0}  # a seed-0 network, as python -m core.baselines
    cached = sorted(json.loads(p.read_text())["config"]["backbone.patch_size"] for p in (results / "baselines").glob(
        "*.json"))
    assert cached == [8, 16]  # the failed one is not kept: the next build tries again
    table = pd.read_csv(html.with_name("table.csv"), dtype={"setting": str}).set_index("setting")
    assert table.loc["16", "random_init_top1"] == 70.0 and table.loc["8", "random_init_top1"] == 62.0
    assert table["raw_pixels_top1"].tolist()[:2] == [83.5, 83.5] and pd.isna(table.loc["5", "raw_pixels_top1"])
    text = html.with_name("report.md").read_text()
    assert ("References for 16 (the same k-NN, seed 0): a randomly initialised network of the same shape 70.00 % "
            "top-1, raw pixels 83.50 %. References for 8 (the same k-NN, seed 0): a randomly initialised network of "
            "the same shape 62.00 % top-1, raw pixels 83.50 %. No reference for 4 (paper: 5): FileNotFoundError: no "
            "Fashion-MNIST in /nonexistent/fashion-mnist.") in text
    assert "References for 16 (the same k-NN, seed 0)" in html.with_name("table.tex").read_text()
    by_hand.clear()
    build.build_report("patch", results)
    assert [c["backbone.patch_size"] for c in by_hand] == [4]  # only the one never measured
    by_hand.clear()
    build.build_report("patch", results, baselines=False)
    assert by_hand == [] and "References for 16" in html.with_name("report.md").read_text()


def test_a_micro_config_is_measured_for_real_and_kept(tmp_path, monkeypatch):
    """The study ran seed 1 only; its reference is the seed-0 network of python -m core.baselines."""
    axis = {"name": "m", "key": "loss.center_momentum", "labels": ["0.9"], "paper": None,
            "set": {"0.9": {"loss.center_momentum": 0.9}}}
    results = write_results(tmp_path / "micro", "micro", [axis], [1], [done({"m": "0.9"}, 1, 60.0)], base=MICRO)
    build.build_report("micro", results)
    expected = baselines(profile_config("tiny", {"head.out_dim": K, "epochs": 3, "batch_size": 64, **MICRO,
                                                 "loss.center_momentum": 0.9, "seed": 0}))
    (cache,) = (results / "baselines").glob("*.json")
    kept = json.loads(cache.read_text())
    assert {kind: kept[kind] for kind in ("random_init", "raw_pixels")} == expected
    assert kept["command"] == ("python -m core.baselines --profile tiny --set backbone.depth=1 --set "
                               "backbone.embed_dim=32 --set backbone.num_heads=2 --set eval.max_memory=500 --set "
                               "eval.max_queries=200 --set precision=fp32")
    monkeypatch.setattr(references, "measure", lambda config: pytest.fail("a rebuild measured again"))
    copy = tmp_path / "copy" / "micro"
    shutil.copytree(results, copy, ignore=shutil.ignore_patterns("report"))  # e.g. copied off a cluster
    html = build.build_report("micro", copy)
    random = expected["random_init"]["top1"]
    assert f"a randomly initialised network of the same shape {random:.2f} % top-1" in html.with_name(
        "report.md").read_text()


def test_without_measuring_a_report_has_no_references(tmp_path, by_hand):
    results = write_results(tmp_path / "none", "none", [PATCH], [0], [done({"patch": "16"}, 0, 70.0)])
    html = build.build_report("none", results, baselines=False)
    assert by_hand == [] and not (results / "baselines").exists()
    assert "References (the same k-NN" not in html.with_name("report.md").read_text()
    assert build.main(["none", "--results", str(results), "--no-baselines"]) == 0 and by_hand == []
