"""A study has one identity: the options it was launched with, recorded in study.json and reused
by --status, --retry-failed and a plain relaunch; other options are refused (or added with
--add-runs). Real launches of micro studies, real ledgers."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib

import pytest
import tomli_w
from optuna.trial import TrialState

from core.config import DINOConfig
from studies import identity, spec
from studies.run import main
from tests.helpers import MICRO_SET, REPO, SLOW_EPOCHS, by_label, trials, wait_for

AXES = [{"name": "m", "key": "loss.center_momentum", "values": [0.9, 0.99]}]


def study_file(folder, name: str, **top):
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps({"description": f"test study {name}", **top, "set": MICRO_SET, "axes": AXES}))
    return path


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """A micro study launched with ``--set epochs=1`` and run to the end (the study says 3)."""
    folder = tmp_path_factory.mktemp("identity")
    path = study_file(folder, "ident")
    results = folder / "results"
    assert main([str(path), "--results", str(results), "--set", "epochs=1", "--max-parallel", "2"]) == 0
    return path, results


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_launch_options_are_recorded_and_reused_without_being_given(launched, capsys):
    path, results = launched
    plan_data = json.loads((results / "study.json").read_text())
    assert plan_data["launch_options"] == [{"profile": "tiny", "set": {"epochs": 1}, "data": None, "seeds": None}]
    code, out, _ = run(capsys, path, "--results", results, "--status")  # the study's own epochs are 3
    assert code == 0 and "2/2 done" in out
    code, out, _ = run(capsys, path, "--results", results)
    assert code == 0 and "nothing to submit (progress: 2/2 done" in out
    code, out, _ = run(capsys, path, "--results", results, "--retry-failed")
    assert code == 0 and "nothing to submit" in out
    code, out, _ = run(capsys, path, "--results", results, "--print-config")
    assert code == 0 and {t["epochs"] for t in tomllib.loads(out).values()} == {1}
    assert len(trials(results, "ident")) == 2  # nothing trained again


def test_the_same_options_written_differently_are_the_same_study(launched, capsys):
    path, results = launched
    for spelling in (["--set", "epochs=1.0"], ["--set", "epochs=1", "--profile", "tiny"],
                     ["--seeds", "1", "--set", "epochs=1"], ["--set", "loss.teacher_temp_warmup_epochs=0%",
                                                            "--set", "epochs=1"]):
        code, out, err = run(capsys, path, "--results", results, "--status", *spelling)
        assert (code, err) == (0, "") and "2/2 done" in out, spelling


def test_other_options_are_refused_with_the_differences_and_the_fixes(launched, capsys):
    path, results = launched
    before = (results / "study.json").read_bytes(), (results / "ledger.journal").read_bytes()
    for command in ([], ["--status"], ["--retry-failed"], ["--dry-run"]):
        code, out, err = run(capsys, path, "--results", results, "--set", "epochs=2", *command)
        (line,) = err.splitlines()
        assert code == 2 and out == "", command
        assert line.startswith(f"error: --results {results}: study ident there was launched with "
                               "--profile tiny --set epochs=1; this command plans --profile tiny --set epochs=2 "
                               "(epochs 1 -> 2)"), line
        assert "give a new --results" in line and "--add-runs" in line
    code, _, err = run(capsys, path, "--results", results, "--seeds", "2")
    assert code == 2 and "(seeds 0 -> 0, 1)" in err
    assert ((results / "study.json").read_bytes(), (results / "ledger.journal").read_bytes()) == before


def test_add_runs_adds_an_option_set_to_the_study(launched, capsys, tmp_path):
    path, original = launched
    results = tmp_path / "results"
    shutil.copytree(original, results)
    code, out, _ = run(capsys, path, "--results", results, "--seeds", "2", "--add-runs", "--max-parallel", "2")
    assert code == 0 and "launching 2 missing run(s)" in out  # seed 1 of both points, with epochs=1
    assert sorted(by_label(results, "ident")) == [f"m={m} seed={s}" for m in ("0.9", "0.99") for s in (0, 1)]
    assert json.loads((results / "study.json").read_text())["launch_options"] == [
        {"profile": "tiny", "set": {"epochs": 1}, "data": None, "seeds": None},
        {"profile": "tiny", "set": {"epochs": 1}, "data": None, "seeds": 2}]
    code, out, _ = run(capsys, path, "--results", results, "--status")  # all the study's runs
    assert code == 0 and "4/4 done" in out
    code, out, _ = run(capsys, path, "--results", results, "--status", "--seeds", "2")  # one option set
    assert code == 0 and "4/4 done" in out
    code, _, err = run(capsys, path, "--results", results, "--add-runs", "--profile", "vits16_imagenet", "--status")
    assert code == 2 and "a study's runs share one profile" in err


def test_a_results_folder_from_before_adopts_the_options_and_says_so_once(launched, capsys, tmp_path):
    path, original = launched
    results = tmp_path / "results"
    shutil.copytree(original, results)
    plan_data = json.loads((results / "study.json").read_text())
    del plan_data["launch_options"]
    (results / "study.json").write_text(json.dumps(plan_data))

    code, out, err = run(capsys, path, "--results", results, "--status")  # the study's epochs: not these runs
    assert code == 0 and "0/2 done" in out
    assert err.splitlines() == ["study.json records no launch options (written before they were): adopting "
                                "--profile tiny; 2 of the 2 runs it lists are not planned by them: give the "
                                "options they were launched with"]
    code, out, err = run(capsys, path, "--results", results, "--set", "epochs=1")  # adopted and recorded
    assert code == 0 and "nothing to submit (progress: 2/2 done" in out
    assert err == "study.json records no launch options (written before they were): adopting --profile tiny " \
                  "--set epochs=1\n"
    code, out, err = run(capsys, path, "--results", results, "--status")
    assert (code, err) == (0, "") and "2/2 done" in out


def test_two_launchers_with_different_options_launch_only_one(tmp_path):
    """Started together: whichever records its options first launches; the other is refused,
    whether it read study.json before or after the first wrote it (the launch lock rechecks)."""
    path = study_file(tmp_path, "race")
    results = tmp_path / "results"
    procs = [subprocess.Popen([sys.executable, "-m", "studies.run", str(path), "--results", str(results), "--set",
                               f"epochs={epochs}", "--max-parallel", "1"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for epochs in (1, 2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outputs
    winner = [p.returncode for p in procs].index(0) + 1  # epochs of the launcher that ran
    (refused,) = outputs[2 - winner][1].splitlines()
    assert refused.startswith("error: --results ") and f"--set epochs={winner}" in refused
    recorded = json.loads((results / "study.json").read_text())["launch_options"]
    assert recorded == [{"profile": "tiny", "set": {"epochs": winner}, "data": None, "seeds": None}]
    done = trials(results, "race")
    assert len(done) == 2 and all(t.state == TrialState.COMPLETE for t in done)
    assert {json.loads((results / "sacred" / t.user_attrs["run_id"] / "config.json").read_text())["dino"]["epochs"]
            for t in done} == {winner}


def test_the_options_survive_a_killed_launcher(tmp_path, capsys):
    path = study_file(tmp_path, "killed")
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "studies.run", str(path), "--results", str(results),
                             "--set", "epochs=40", "--set", f"data.train_subset={SLOW_EPOCHS['data.train_subset']}",
                             "--max-parallel", "1"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: (results / "study.json").is_file(), 120, "the launcher to record its options")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the jobs it started
        proc.wait()
    code, out, _ = run(capsys, path, "--results", results, "--print-config")
    tables = tomllib.loads(out)
    assert code == 0 and sorted(tables) == ["m=0.9 seed=0", "m=0.99 seed=0"]
    assert {(t["epochs"], t["data"]["train_subset"]) for t in tables.values()} == {(40, 1024)}
    code, _, err = run(capsys, path, "--results", results, "--status", "--set", "epochs=3")
    assert code == 2 and "(epochs 40 -> 3" in err


def test_print_config_is_each_runs_config_as_toml_and_writes_nothing(tmp_path, capsys):
    path = study_file(tmp_path, "printed")
    results = tmp_path / "results"
    code, out, err = run(capsys, path, "--results", results, "--set", "epochs=5", "--print-config")
    assert (code, err) == (0, "")
    tables = tomllib.loads(out)
    assert sorted(tables) == ["m=0.9 seed=0", "m=0.99 seed=0"]
    configs = {label: DINOConfig.from_dict(table) for label, table in tables.items()}
    assert configs["m=0.9 seed=0"].loss.center_momentum == 0.9 and configs["m=0.99 seed=0"].loss.center_momentum == 0.99
    assert {c.epochs for c in configs.values()} == {5} and {c.batch_size for c in configs.values()} == {64}
    assert not results.exists()


def test_studies_of_a_users_own_folder_are_listed_and_named(tmp_path, capsys, monkeypatch):
    own = tmp_path / "mine"
    own.mkdir()
    study_file(own, "my_study")
    code, out, _ = run(capsys, "--studies", own, "--list")
    assert code == 0 and f"my_study               test study my_study  ({own})" in out.splitlines()
    assert set(spec.available()) <= {line.split()[0] for line in out.splitlines()}  # the shipped ones too
    code, out, _ = run(capsys, "my_study", "--studies", own, "--print-config", "--results", tmp_path / "r")
    assert code == 0 and len(tomllib.loads(out)) == 2
    monkeypatch.setenv("STUDIES_DIR", str(own))
    code, out, _ = run(capsys, "my_study", "--dry-run", "--results", tmp_path / "r")
    assert code == 0 and out.startswith("my_study: test study my_study")
    code, _, err = run(capsys, "my_stud", "--dry-run", "--results", tmp_path / "r")
    assert code == 2 and err.strip().endswith("did you mean my_study?") and str(own) in err
    monkeypatch.setenv("STUDIES_DIR", str(tmp_path / "nowhere"))
    code, _, err = run(capsys, "--list")
    assert code == 2 and err == f"error: $STUDIES_DIR {tmp_path / 'nowhere'} is not a folder; give the folder " \
                                "that holds your study .toml files\n"
    assert not (tmp_path / "r").exists()


def test_options_of_one_identity_match_whatever_their_spelling(tmp_path):
    """No training: the planner decides what two option sets train."""
    study = spec.load(str(study_file(tmp_path, "spelled")))
    runs_of = identity.planner(study)
    recorded = identity.Options("tiny", {"optim.warmup_epochs": 1, "epochs": 2.0, "data.train_subset": 128})
    for same in ({"epochs": 2, "optim.warmup_epochs": "50%"}, {"data.train_subset": 128, "epochs": 2,
                                                              "optim.warmup_epochs": 1.0}):
        assert identity.same(recorded, identity.Options("tiny", same), runs_of), same
    other = identity.Options("tiny", {"epochs": 2, "optim.warmup_epochs": "25%"})
    assert not identity.same(recorded, other, runs_of)
    assert identity.differences(recorded, other, runs_of) == ["optim.warmup_epochs 1 -> '25%'"]
    data = identity.Options("tiny", {}, data="d")
    assert identity.same(data, identity.Options("tiny", {}, data="./d/../d"), runs_of)
