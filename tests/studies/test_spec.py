"""Study files, planning and the CLI's refusals: every bad input is one line naming the file (or
option), the key and the fix, and nothing is created. No training happens here."""
from __future__ import annotations

import pytest

from core.profiles import PROFILES
from studies import plan, sbatch, spec
from studies.run import main

M_AXIS = {"name": "m", "key": "loss.center_momentum", "values": [0.9, 0.99]}


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("name", sorted(spec.available()))
def test_shipped_studies_expand_on_every_profile(name, profile):
    study = spec.load(name)
    runs = plan.expand(study, profile)
    assert len({r.key for r in runs}) == len(runs) > 0
    assert all(r.config.seed in study.seeds for r in runs)
    if any(axis.paper for axis in study.axes):
        assert all(r.paper is None or r.paper > 0 for r in runs)


def test_shipped_reference_values_and_mappings():
    # one seed each, as in the paper, so the README's main job (4 tiny runs) ends within 15 minutes
    assert all(spec.load(name).seeds == (0,) for name in spec.available())
    epochs = plan.expand(spec.load("epochs"), "tiny", seeds=(0,))  # 1 : 3 : 8 around the profile's 14
    assert [(r.axes["epochs"], r.config.epochs) for r in epochs] == [("100", 5), ("300", 14), ("800", 37)]
    m = plan.expand(spec.load("centering_momentum"), "tiny", seeds=(0,))
    assert [(r.axes["m"], r.paper, r.config.loss.center_momentum) for r in m] == [
        ("0", 69.1, 0.0), ("0.9", 69.7, 0.9), ("0.99", 69.4, 0.99), ("0.999", 0.1, 0.999)]
    tau = plan.expand(spec.load("teacher_temperature"), "tiny", seeds=(0,))
    assert [r.paper for r in tau] == [43.9, 66.7, 69.6, 68.7, 0.1, 69.7]
    assert tau[-1].config.loss.teacher_temp == "0.04->0.07"
    patch = plan.expand(spec.load("patch_size"), "tiny", seeds=(0,))  # paper labels, tiny values
    assert [(r.axes["patch"], r.config.backbone.patch_size, r.paper) for r in patch] == [
        ("16", 16, 74.5), ("8", 8, 78.3), ("5", 4, None)]
    big = plan.expand(spec.load("patch_size"), "vits16_imagenet", seeds=(0,))
    assert [(r.config.backbone.patch_size, r.config.crops.local_size, r.config.epochs) for r in big] == [
        (16, 96, 800), (8, 96, 800), (5, 95, 800)]
    collapse = plan.expand(spec.load("collapse"), "tiny", seeds=(0,))
    assert [(r.config.loss.centering, r.config.loss.sharpening) for r in collapse] == [
        (True, False), (False, True), (True, True)]
    assert all(r.config.log_every == 1 and r.paper is None for r in collapse)
    update = plan.expand(spec.load("teacher_update"), "vits16_imagenet", seeds=(0,))
    assert [r.paper for r in update] == [0.1, 0.1, 66.6, 72.8] and update[0].config.epochs == 300


def test_list_and_dry_run(capsys, tmp_path):
    code, out, _ = run_cli(["--list"], capsys)
    assert code == 0 and all(name in out for name in spec.available())
    results = tmp_path / "results"
    code, out, _ = run_cli(["centering_momentum", "--dry-run", "--results", results], capsys)
    assert code == 0 and "m=0.999 seed=0" in out and "loss.center_momentum 0.9 -> 0.999" in out
    assert "paper 69.1" in out and not results.exists()


def test_dry_run_sbatch_asks_for_the_profile_resources(capsys, tmp_path):
    code, out, _ = run_cli(["teacher_temperature", "--dry-run", "--cluster", "slurm", "--profile",
                            "vits16_imagenet", "--data", tmp_path, "--partition", "gpu", "--seeds", "3",
                            "--results", tmp_path / "r"], capsys)
    assert code == 0
    script = out[out.index("#!/bin/bash"):]
    for line in ("--array=0-17%2", "--gpus-per-node=8", "--ntasks-per-node=8", "--cpus-per-task=10",
                 "--mem=320GB", "--time=2880", "--nodes=1", "--signal=USR2@300", "--partition=gpu",
                 "--job-name=teacher_temperature"):
        assert f"#SBATCH {line}" in script
    assert "submitit.core._submit" in script and "tau_t=0.08 seed=2" in out
    assert not (tmp_path / "r").exists()


def dry_run_script(write_study, tmp_path, capsys, resources) -> str:
    """The sbatch script of a dry run of a one-axis micro study with these tiny resources."""
    path = write_study("knobs", axes=[M_AXIS], resources=resources)
    code, out, err = run_cli([path, "--dry-run", "--cluster", "slurm", "--results", tmp_path / "r"], capsys)
    assert code == 0, err
    assert not (tmp_path / "r").exists()
    return out[out.index("#!/bin/bash"):]


def test_dry_run_sbatch_carries_every_cluster_knob(write_study, tmp_path, capsys):
    script = dry_run_script(write_study, tmp_path, capsys, {
        "account": "proj", "qos": "high", "constraint": "a100&ib", "exclusive": True,
        "sbatch": {"mail-type": "END", "requeue": True}, "setup": ["module load cuda/12.1", "conda activate dino"],
        "srun_args": ["--cpu-bind=none"]})
    for line in ("--account=proj", "--qos=high", "--constraint='a100&ib'", "--exclusive", "--mail-type=END",
                 "--requeue", "--ntasks-per-node=1", "--nodes=1"):
        assert f"#SBATCH {line}\n" in script, line
    assert "\n# setup\nmodule load cuda/12.1\nconda activate dino\n" in script
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert srun.index("--cpu-bind=none") < srun.index("submitit.core._submit") and "--kill-on-bad-exit" not in srun
    assert "--gpus-per-node" not in script and "rendezvous" not in script  # one CPU process: no DDP


def test_dry_run_of_a_multi_node_run_shows_its_ddp_layout_and_rendezvous(write_study, tmp_path, capsys):
    script = dry_run_script(write_study, tmp_path, capsys, {"nodes": 2, "gpus_per_node": 8})
    for line in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8"):
        assert f"#SBATCH {line}\n" in script, line
    assert "# one DDP run of 2 node(s) x 8 task(s)" in script
    assert "MASTER_ADDR = the first node of $SLURM_JOB_NODELIST" in script
    assert "MASTER_PORT = 20000 + $SLURM_JOB_ID % 20000" in script
    assert "srun --unbuffered" in script and "--kill-on-bad-exit=1" in script
    gres = dry_run_script(write_study, tmp_path, capsys, {"nodes": 2, "gpus_per_node": 8, "gres": "gpu:a100:8"})
    assert "#SBATCH --gres=gpu:a100:8\n" in gres and "--gpus-per-node" not in gres  # GPUs asked for once
    cpu = dry_run_script(write_study, tmp_path, capsys, {"tasks_per_node": 2, "cpus_per_task": 1})
    assert "#SBATCH --ntasks-per-node=2\n" in cpu and "x 2 task(s)" in cpu


def test_set_seeds_and_data_reach_every_run(tmp_path):
    study = spec.load("centering_momentum")
    runs = plan.expand(study, "tiny", {"epochs": 2, "data.path": str(tmp_path)}, seeds=(0, 1))
    assert len(runs) == 8 and {r.seed for r in runs} == {0, 1}
    assert all(r.config.epochs == 2 and r.config.data.path == str(tmp_path) for r in runs)
    again = plan.expand(study, "tiny", {"epochs": 2, "data.path": str(tmp_path)}, seeds=(0, 1))
    assert [r.key for r in runs] == [r.key for r in again]  # stable keys
    assert plan.expand(study, "tiny")[0].key != runs[0].key


def test_array_chunks_at_max_array_size():
    assert [len(c) for c in sbatch.chunks(list(range(2500)), 1001)] == [1001, 1001, 498]
    assert [len(c) for c in sbatch.chunks(list(range(3)), None)] == [3]


BAD_STUDIES = [
    # (what is wrong, study fields, expected fragments of the one error line)
    ("unknown top-level key", {"seed": 2}, ["seed: unknown key", "did you mean 'seeds'"]),
    ("wrong type", {"seeds": "3"}, ["seeds:", "write a count"]),
    ("unknown profile", {"profile": "huge"}, ["profile: unknown profile 'huge'", "tiny"]),
    ("unknown metric", {"metric": "accuracy"}, ["metric: unknown metric", "knn_top1"]),
    ("unknown config field", {"axes": [{**M_AXIS, "key": "loss.center_momentun"}]},
     ["axes[0].key:", "did you mean loss.center_momentum"]),
    ("unknown key in set", {"set": {"optim.lrr": 0.1}}, ["set.optim.lrr:", "did you mean optim.lr"]),
    ("empty grid", {"axes": []}, ["axes: the grid is empty", "declare at least one [[axes]]"]),
    ("empty values", {"axes": [{**M_AXIS, "values": []}]}, ["axes[0].values: missing or empty"]),
    ("duplicate values", {"axes": [{**M_AXIS, "values": [0.9, 0.99, 0.9]}]},
     ["axes[0].values[2]: duplicates axes[0].values[0]", "remove one"]),
    ("paper count mismatch", {"axes": [{**M_AXIS, "paper": [69.7]}]},
     ["axes[0].paper: has 1 numbers for 2 values", "one per value"]),
    ("mapping count mismatch", {"axes": [{**M_AXIS, "profiles": {"tiny": {"values": [0.5]}}}]},
     ["axes[0].profiles.tiny.values: must list 2 values"]),
    ("scalar without key", {"axes": [{"name": "m", "values": [0.9]}]}, ["axes[0].values[0]:", "add key"]),
    ("table without label", {"axes": [{"name": "v", "values": [{"set": {"loss.centering": False}}]}]},
     ["axes[0].values[0].label: missing"]),
    ("two axes, one key", {"axes": [M_AXIS, {**M_AXIS, "name": "m2", "values": [0.5]}]},
     ["sets loss.center_momentum, which axis m sets too"]),
    ("swept key also set", {"set": {"loss.center_momentum": 0.5}}, ["set.loss.center_momentum: is swept by axis m"]),
    ("seed as an axis", {"axes": [{"name": "s", "key": "seed", "values": [1, 2]}]}, ["seed is not an axis"]),
    ("resources typo", {"profiles": {"tiny": {"resources": {"gpus": 1}}}},
     ["profiles.tiny.resources.gpus: unknown key", "allowed keys: nodes, gpus_per_node"]),
    ("resources type", {"profiles": {"tiny": {"resources": {"time_min": "1h"}}}},
     ["profiles.tiny.resources.time_min: has the wrong type", "write a whole number"]),
    ("resources value", {"profiles": {"tiny": {"resources": {"nodes": 0}}}},
     ["profiles.tiny.resources.nodes: 0 is too small"]),
    ("resources list", {"profiles": {"tiny": {"resources": {"setup": "module load cuda"}}}},
     ["profiles.tiny.resources.setup: has the wrong type", "write a list of strings"]),
    ("tasks and GPUs", {"profiles": {"tiny": {"resources": {"gpus_per_node": 8, "tasks_per_node": 4}}}},
     ["profiles.tiny.resources.tasks_per_node: 4 tasks for 8 GPUs per node", "one DDP task per GPU"]),
    ("gres and GPUs", {"profiles": {"tiny": {"resources": {"gpus_per_node": 8, "gres": "gpu:4"}}}},
     ["profiles.tiny.resources.gres: 'gpu:4' asks for 4 GPU(s) per node but gpus_per_node = 8"]),
    ("sbatch twice", {"profiles": {"tiny": {"resources": {"sbatch": {"account": "proj"}}}}},
     ["profiles.tiny.resources.sbatch.account: --account comes from the key account; set that instead"]),
    ("sbatch logs", {"profiles": {"tiny": {"resources": {"sbatch": {"output": "x.log"}}}}},
     ["profiles.tiny.resources.sbatch.output: --output is set by submitit"]),
    ("invalid run config", {"axes": [{**M_AXIS, "values": [0.9, 1.0]}]},
     ["run 'm=1' on profile tiny:", "loss.center_momentum=1.0 must be in [0, 1)"]),
    ("same config twice", {"axes": [{"name": "v", "values": [{"label": "a", "set": {}}, {"label": "b", "set": {}}]}]},
     ["sets the same config as axes[0].values[0]"]),
]


@pytest.mark.parametrize("what, fields, fragments", BAD_STUDIES, ids=[b[0] for b in BAD_STUDIES])
def test_bad_study_is_one_line_per_problem(what, fields, fragments, tmp_path, capsys):
    import tomli_w

    study = {"description": what, "axes": [M_AXIS], **fields}
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(study))
    code, _, err = run_cli([path, "--results", tmp_path / "r"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(str(path)) or lines[0].startswith("--"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    assert not (tmp_path / "r").exists()


def test_several_problems_are_all_reported(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('profile = "huge"\nmetric = 3\n[[axes]]\nname = "m"\nkey = "nope"\nvalues = [1, 1]\n')
    code, _, err = run_cli([path], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 4, err


def test_toml_syntax_error(tmp_path, capsys):
    path = tmp_path / "broken.toml"
    path.write_text("profile = 'tiny'\nseeds = = 2\n")
    code, _, err = run_cli([path], capsys)
    assert code == 2 and err.startswith(f"{path}: not valid TOML") and "line 2" in err


BAD_OPTIONS = [
    (["--set", "optim.lrr=1"], "--set optim.lrr: unknown config key 'optim.lrr'; did you mean optim.lr"),
    (["--set", "epochs"], "--set epochs: write KEY=VALUE"),
    (["--set", "loss.center_momentum=0.5"], "--set loss.center_momentum: is swept by axis m"),
    (["--set", "seed=3"], "--set seed: runs take their seeds from the study; use --seeds N"),
    (["--set", "epochs=abc"], "every run on profile tiny: epochs='abc' has the wrong type: expected int"),
    (["--profile", "huge"], "--profile: unknown profile 'huge'"),
    (["--seeds", "0"], "--seeds 0: give a count of at least 1"),
    (["--observer", "mongo"], "--observer mongo: write NAME=ARGUMENT"),
    (["--max-parallel", "0"], "--max-parallel 0: give at least 1"),
    (["--data", "/no/such/folder"], "data.path /no/such/folder does not exist on this machine"),
]


@pytest.mark.parametrize("options, message", BAD_OPTIONS, ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_bad_option_is_one_line(options, message, tmp_path, capsys):
    code, _, err = run_cli(["centering_momentum", "--results", tmp_path / "r", *options], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_cluster_comes_from_the_user_never_from_the_machine(monkeypatch, tmp_path, capsys):
    code, out, _ = run_cli(["collapse", "--dry-run"], capsys)
    assert code == 0 and "cluster local" in out  # even where srun exists
    monkeypatch.setenv("STUDIES_CLUSTER", "slurm")
    code, out, _ = run_cli(["collapse", "--dry-run"], capsys)
    assert code == 0 and "cluster slurm" in out and "#SBATCH --array=0-2%3" in out
    monkeypatch.setenv("STUDIES_CLUSTER", "cloud")
    code, _, err = run_cli(["collapse", "--dry-run"], capsys)
    assert code == 2 and "$STUDIES_CLUSTER=cloud: choose one of local, slurm, debug" in err


def test_unknown_study_name(capsys):
    code, _, err = run_cli(["centering_momentun"], capsys)
    assert code == 2 and "did you mean centering_momentum?" in err


def test_status_of_a_study_never_run_creates_nothing(tmp_path, capsys):
    code, out, _ = run_cli(["collapse", "--status", "--results", tmp_path / "r"], capsys)
    assert code == 0 and "0/3 done, 0 running, 0 failed, 3 missing" in out
    assert not (tmp_path / "r").exists()
