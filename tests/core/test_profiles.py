"""Profiles are files: the shipped ones in ``ablations/profiles/``, a user's own anywhere (by path,
from the command line or a study), extending another, checked like a study, and refused with one
line, exit 2 and nothing created when they are wrong."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import core.train
import studies.run
from core.config import DINOConfig
from core.profiles import PROFILES, profile_config
from tests.helpers import REPO, by_label

FAST = """\
extends = "micro"               # micro, as the study tests run it: 2 iterations per epoch, no warm-ups
precision = "fp32"
[data]
train_subset = 128
[optim]
warmup_epochs = 0
[loss]
teacher_temp_warmup_epochs = 0
[eval]
max_memory = 1000
max_queries = 300
[resources]
time_min = 7
"""


def test_the_shipped_profiles_are_the_files_in_ablations():
    assert sorted(PROFILES) == ["micro", "tiny", "vits16_imagenet"]
    assert {path.parent for path in PROFILES.values()} == {REPO / "ablations" / "profiles"}


def test_micro_is_tiny_with_the_smallest_model():
    micro, tiny = profile_config("micro"), profile_config("tiny")
    assert (micro.backbone.embed_dim, micro.backbone.depth, micro.backbone.num_heads) == (32, 1, 2)
    assert (micro.head.hidden_dim, micro.head.bottleneck_dim, micro.head.out_dim) == (64, 32, 64)
    assert micro.data == dataclasses.replace(tiny.data, train_subset=256)  # tiny's data, fewer images
    assert micro.loss == dataclasses.replace(tiny.loss, teacher_temp_warmup_epochs=2)
    assert (micro.teacher, micro.precision) == (tiny.teacher, "bf16")
    assert micro.data.train_subset // micro.batch_size * micro.epochs == 12  # iterations in a run


def test_a_user_profile_by_path_extends_another_relative_to_itself(tmp_path):
    scales = tmp_path / "scales"
    scales.mkdir()
    (scales / "base.toml").write_text('extends = "micro"\nepochs = 2\n[backbone]\ndepth = 2\n')
    (scales / "deeper.toml").write_text('extends = "base.toml"   # beside this file\n"optim.lr" = 0.001\n')
    proc = subprocess.run([sys.executable, "-m", "core.train", "--profile", "scales/deeper.toml", "--print-config",
                           "--set", "epochs=3"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert proc.returncode == 0, proc.stderr
    printed = DINOConfig.from_dict(tomllib.loads(proc.stdout))
    assert printed == profile_config("micro", {"backbone.depth": 2, "optim.lr": 0.001, "epochs": 3})
    assert not (tmp_path / "runs").exists()


def test_a_study_runs_on_a_user_profile_named_beside_it(tmp_path, capsys):
    (tmp_path / "fast.toml").write_text(FAST)
    study = tmp_path / "mine.toml"
    study.write_text('description = "on my own scale"\nprofile = "fast.toml"\n'
                     '[[axes]]\nname = "m"\nkey = "loss.center_momentum"\nvalues = [0.9, 0.99]\n')
    results = tmp_path / "results"
    assert studies.run.main([str(study), "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"profile {tmp_path / 'fast.toml'}," in out and "time 7 min" in out  # the profile's own resources
    assert studies.run.main([str(study), "--cluster", "debug", "--results", str(results)]) == 0
    runs = by_label(results, "mine")
    assert sorted(runs) == ["m=0.9 seed=0", "m=0.99 seed=0"]
    assert all(0 <= trial.value <= 100 for (trial,) in runs.values())


def bad_profiles(folder: Path) -> dict[str, Path]:
    files = {
        "typo": "[backbone]\nembed_dm = 3\n",
        "two_typos": "epochz = 3\n[optim]\nlrr = 1\n",
        "zero_epochs": 'extends = "tiny"\nepochs = 0\n',
        "text_epochs": 'extends = "tiny"\nepochs = "ten"\n',
        "not_toml": "epochs = = 3\n",
        "unknown_base": 'extends = "tinny"\n',
        "missing_base": 'extends = "nope.toml"\n',
        "circle_a": 'extends = "circle_b.toml"\n',
        "circle_b": 'extends = "circle_a.toml"\n',
        "resources_value": 'extends = "tiny"\nresources = 3\n',
        "resources_typo": 'extends = "tiny"\n[resources]\ncpus_per_tsak = 2\n',
    }
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(text)
    return {name: folder / f"{name}.toml" for name in files}


CASES = [  # (profile file, commands, fragments of the one line; {p}: the file, {d}: its folder)
    ("typo", ("train", "study"), ["{p}: unknown config key 'backbone.embed_dm'; did you mean backbone.embed_dim"]),
    ("two_typos", ("train", "study"), ["unknown config key 'epochz'", " | unknown config key 'optim.lrr'"]),
    ("zero_epochs", ("train", "study"), ["{p}: epochs=0 must be > 0"]),
    ("text_epochs", ("train", "study"), ["{p}: epochs='ten' has the wrong type: expected int"]),
    ("not_toml", ("train", "study"), ["{p}: not valid TOML", "fix the syntax there"]),
    ("unknown_base", ("train", "study"), ["{p}: extends: unknown profile 'tinny'; choose one of micro, tiny, "
                                          "vits16_imagenet, or give the path of a profile file"]),
    ("missing_base", ("train", "study"), ["{p}: extends: profile file {d}/nope.toml not found"]),
    ("circle_a", ("train", "study"), ["extends: profiles extend each other in a circle", "circle_b.toml"]),
    ("resources_value", ("train", "study"), ["{p}: resources: has the wrong type (int); write a [resources] table"]),
    ("resources_typo", ("study",), ["{p}: resources.cpus_per_tsak: unknown key; did you mean 'cpus_per_task'?"]),
    ("nowhere", ("train", "study"), ["--profile: profile file {d}/nowhere.toml not found"]),
]
TABLE = [(name, command, fragments) for name, commands, fragments in CASES for command in commands]


@pytest.mark.parametrize("name, command, fragments", TABLE, ids=[f"{c}: {n}" for n, c, _ in TABLE])
def test_a_bad_profile_file_is_one_line_exit_2_and_creates_nothing(name, command, fragments, tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = bad_profiles(tmp_path / "scales").get(name, tmp_path / "scales" / f"{name}.toml")
    argv = (["--profile", str(path), "--out", str(tmp_path / "run")] if command == "train" else
            ["centering_momentum", "--profile", str(path), "--results", str(tmp_path / "results")])
    before = set(tmp_path.rglob("*"))
    code = {"train": core.train.main, "study": studies.run.main}[command](argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment.format(p=path, d=path.parent) in lines[0], lines[0]
    assert set(tmp_path.rglob("*")) == before


def test_an_unknown_profile_name_lists_the_shipped_ones_and_says_a_path_works(tmp_path, capsys):
    study = tmp_path / "named.toml"
    study.write_text('profile = "huge"\n[[axes]]\nname = "m"\nkey = "loss.center_momentum"\nvalues = [0.9]\n')
    assert studies.run.main([str(study), "--results", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{study}: profile: unknown profile 'huge'; choose one of micro, tiny, vits16_imagenet, "
        "or give the path of a profile file (path/to/scale.toml)")
    assert core.train.main(["--profile", "huge"]) == 2
    assert "--profile: unknown profile 'huge'; choose one of micro, tiny" in capsys.readouterr().err


def test_a_profile_file_the_trainer_reads_may_hold_resources_it_never_uses(tmp_path, capsys):
    """Only studies schedule, so only studies check [resources]: the trainer passes it through."""
    (tmp_path / "typo.toml").write_text('extends = "micro"\n[resources]\ncpus_per_tsak = 2\n')
    assert core.train.main(["--profile", str(tmp_path / "typo.toml"), "--print-config"]) == 0
    assert DINOConfig.from_dict(tomllib.loads(capsys.readouterr().out)) == profile_config("micro")
