"""Every command refuses bad input the same way, before any work: exit status 2, one line on
stderr naming the problem, no traceback, nothing created (no results folder, run folder, ledger
or benchmark file). One table of cases, each fed to every command it applies to; nothing trains."""
from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

import benchmarks.run
import core.baselines
import core.train
import reports.build
import studies.run

REPO = Path(__file__).resolve().parents[2]
MAINS = {"train": core.train.main, "baselines": core.baselines.main, "study": studies.run.main,
         "bench": benchmarks.run.main, "report": reports.build.main}
MODULES = {"train": "core.train", "baselines": "core.baselines", "study": "studies.run", "bench": "benchmarks.run",
           "report": "reports.build"}
# What each command gets besides a case's options: where it would write (inside the test's folder)
# and, for studies.run, a study.
WRITES_TO = {"train": ["--out", "{tmp}/run"], "baselines": [], "study": ["--results", "{tmp}/results"],
             "bench": ["--out", "{tmp}/bench.json"], "report": []}
ALL = ("train", "baselines", "study", "bench")  # the commands that take --profile and --set


def everywhere(*argv: str, on: tuple[str, ...] = ALL) -> dict[str, list[str]]:
    return {cli: list(argv) for cli in on}


def learn(*argv: str) -> dict[str, list[str]]:
    """The benchmark reads the data set only in its learn section."""
    return {"bench": ["--only", "learn", *argv]}


def axis(*values) -> dict:
    return {"axes": [{"name": "tau", "key": "loss.teacher_temp", "values": [0.04, *values]}]}


STUDIES = {  # name -> study file contents, written into the test's folder
    "duplicates": axis("0.04->0.04"),
    "nan_text": axis("nan"),
    "ramp_to_nan": axis("0.04->nan"),
    "nan_number": axis(math.nan),
    "lr_nan": {"axes": [{"name": "v", "values": [{"label": "base", "set": {}},
                                                 {"label": "bad", "set": {"optim.lr": math.nan}}]}]},
    "six_ranks": {**axis(0.07), "profiles": {"tiny": {"resources": {"nodes": 2, "gpus_per_node": 3}}}},
}
DRIVERLESS = "postgresql://user@localhost/ledger"

CASES = [
    # (what is wrong, {command: its options}, fragments of the one line)
    ("--set without =", everywhere("--set", "epochs"), ["--set epochs: write KEY=VALUE"]),
    ("--set without key", everywhere("--set", "=3"), ["--set =3: write KEY=VALUE"]),
    ("teacher_temp nan", everywhere("--set", "loss.teacher_temp=nan"), ["loss.teacher_temp", "not finite"]),
    ("teacher_temp inf", everywhere("--set", "loss.teacher_temp=inf"), ["loss.teacher_temp", "not finite"]),
    ("teacher_temp -Infinity", everywhere("--set", "loss.teacher_temp=-Infinity"), ["not finite"]),
    ("teacher_temp ramp to nan", everywhere("--set", "loss.teacher_temp=0.04->nan"),
     ["loss.teacher_temp='0.04->nan' is not finite"]),
    ("lr nan", everywhere("--set", "optim.lr=nan"), ["optim.lr='nan' is not finite"]),
    ("warm-up nan%", everywhere("--set", "optim.warmup_epochs=nan%"), ["optim.warmup_epochs='nan%'"]),
    ("bare lr", everywhere("--set", "lr=0.1"), ["--set lr: unknown config key 'lr'; did you mean optim.lr?"]),
    ("no close key", everywhere("--set", "zzz=1"), ["--set zzz", "the nearest valid keys are"]),
    ("all bad --set in one line", everywhere("--set", "epochs", "--set", "lr=1", "--set", "=2"),
     ["3 bad --set options", "--set epochs:", "--set lr:", "--set =2:"]),
    ("--set twice", everywhere("--set", "epochs=2", "--set", "epochs=3"), ["--set epochs: given twice (2 and 3)"]),
    ("unknown profile", everywhere("--profile", "huge"), ["--profile: unknown profile 'huge'", "tiny"]),
    ("unknown option", everywhere("--bogus"), ["unrecognized arguments: --bogus"]),
    ("negative seed", {**everywhere("--set", "seed=-1", on=("train", "bench")), "baselines": ["--seed", "-1"]},
     ["seed=-1 must be >= 0"]),
    ("missing data", {**everywhere("--set", "data.path={tmp}/nowhere", on=("train", "baselines", "study")),
                      **learn("--set", "data.path={tmp}/nowhere")},
     ["Fashion-MNIST not found: data.path", "does not exist on this machine"]),
    ("batch larger than the training subset",
     {**everywhere("--set", "data.train_subset=100", "--set", "batch_size=128", on=("train", "study")),
      **learn("--set", "data.train_subset=100", "--set", "batch_size=128")},
     ["batch_size=128 exceeds the 100 training images"]),
    ("train_subset larger than the data",
     {**everywhere("--set", "data.train_subset=70000", on=("train", "baselines", "study")),
      **learn("--set", "data.train_subset=70000")}, ["data.train_subset=70000 exceeds the 60000 train images"]),
    ("batch per rank on SLURM", {"study": ["{tmp}/six_ranks.toml", "--cluster", "slurm"]},
     ["batch_size=64 is not divisible by the 6 processes"]),
    ("output is a file", {"train": ["--out", "{tmp}/file"], "study": ["--results", "{tmp}/file"]}, ["is a file"]),
    ("output file is a folder", {"bench": ["--out", "{tmp}/folder"]}, ["--out", "is a folder; give a file"]),
    ("output empty", {"train": ["--out", ""], "study": ["--results", ""], "bench": ["--out", ""]}, ["''"]),
    ("output under a file", {"train": ["--out", "{tmp}/file/run"], "study": ["--results", "{tmp}/file/r"],
                             "bench": ["--out", "{tmp}/file/b.json"]}, ["file is a file"]),
    ("output unwritable", {"train": ["--out", "/proc/dino-run"], "study": ["--results", "/proc/dino-results"],
                           "bench": ["--out", "/proc/dino.json"]}, ["cannot write in /proc"]),
    ("storage is a folder", {"study": ["--storage", "{tmp}/folder"]}, ["--storage", "is a folder"]),
    ("storage empty", {"study": ["--storage", ""]}, ["--storage ''"]),
    ("storage unwritable", {"study": ["--storage", "/proc/dino/ledger.journal"]}, ["--storage", "cannot write"]),
    ("storage URL malformed", {"study": ["--storage", "sqlite:/ledger.db"]}, ["not a database URL"]),
    ("storage URL unknown database", {"study": ["--storage", "nosuchdb://host/x"]}, ["'nosuchdb' is not a database"]),
    ("storage in memory", {"study": ["--storage", "sqlite://"]}, ["in-memory database"]),
    ("storage without its driver", {"study": ["--storage", DRIVERLESS]}, ["postgresql driver is not installed"]),
    ("same config twice", {"study": ["{tmp}/duplicates.toml"]},
     ["runs 'tau=0.04' and 'tau=0.04->0.04' are duplicates"]),
    ("axis value 'nan'", {"study": ["{tmp}/nan_text.toml"]}, ["run 'tau=nan'", "not finite"]),
    ("axis value ramp to nan", {"study": ["{tmp}/ramp_to_nan.toml"]}, ["'0.04->nan' is not finite"]),
    ("axis value nan", {"study": ["{tmp}/nan_number.toml"]}, ["axes[0].values[1]: nan is not a finite number"]),
    ("axis table value nan", {"study": ["{tmp}/lr_nan.toml"]}, ["run 'v=bad'", "optim.lr=nan is not finite"]),
    ("study not a .toml", {"study": ["{tmp}/notes.txt"]}, ["notes.txt is a file but not a study"]),
    ("unknown study", {"study": ["centering_momentun"]}, ["did you mean centering_momentum?"]),
    ("seeds", {"study": ["--seeds", "0"]}, ["--seeds 0: give a count of at least 1"]),
    ("seed of a study", {"study": ["--set", "seed=3"]}, ["--set seed: runs take their seeds from the study"]),
    ("empty data", {"study": ["--data", ""]}, ["--data ''"]),
    ("unknown model", everywhere("--set", "backbone.name=vit_no_such_model", on=("train",)),
     ["backbone.name='vit_no_such_model'", "timm refuses it"]),
    ("benchmark sections", {"bench": ["--only", "nothing"]}, ["--only: unknown section(s) nothing"]),
    ("benchmark variants", {"bench": ["--variants", "bf16"]}, ["--variants must start with plain"]),
    ("benchmark GPU batches", {"bench": ["--gpu-batches", "64,abc"]}, ["--gpu-batches 64,abc"]),
    ("benchmark rounds", {"bench": ["--iters", "0"]}, ["--iters 0: give at least 1"]),
    ("report without a study", {"report": []}, ["name one study, or give --all"]),
    ("report collapse-kl nan", {"report": ["centering_momentum", "--collapse-kl", "nan"]}, ["--collapse-kl nan"]),
    ("report runs is a file", {"report": ["--all", "--runs", "{tmp}/file"]}, ["--runs {tmp}/file is a file"]),
    ("report publish is a file", {"report": ["--all", "--publish", "{tmp}/file"]}, ["--publish {tmp}/file is a file"]),
    ("report bad storage URL", {"report": ["centering_momentum", "--storage", "sqlite:/x"]}, ["not a database URL"]),
    ("report unknown option", {"report": ["--bogus"]}, ["unrecognized arguments: --bogus"]),
]
TABLE = [(what, cli, argv, fragments) for what, by_cli, fragments in CASES for cli, argv in by_cli.items()]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The test's folder as the working directory (where default outputs would go), holding a
    regular file, a folder, a text file and the study files of ``STUDIES``."""
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("not a study")
    for name, study in STUDIES.items():
        (tmp_path / f"{name}.toml").write_text(tomli_w.dumps({"description": name, **study}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def command(cli: str, argv: list[str], tmp: Path) -> list[str]:
    study = ["centering_momentum"] if cli == "study" and (not argv or argv[0].startswith("-")) else []
    own = [] if set(argv) & set(WRITES_TO[cli][:1]) else WRITES_TO[cli]
    return [a.format(tmp=tmp) for a in study + argv + own]


def tree(*folders: Path) -> set[Path]:
    return {p for folder in folders if folder.exists() for p in folder.rglob("*")}


@pytest.mark.parametrize("what, cli, argv, fragments", TABLE, ids=[f"{cli}: {what}" for what, cli, *_ in TABLE])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(what, cli, argv, fragments, workdir, capsys):
    if DRIVERLESS in argv and importlib.util.find_spec("psycopg"):
        pytest.skip("psycopg is installed here")
    before = tree(workdir, benchmarks.run.RESULTS)
    code = MAINS[cli](command(cli, argv, workdir))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment.format(tmp=workdir) in lines[0], lines[0]
    assert tree(workdir, benchmarks.run.RESULTS) == before  # no run, results or ledger, no journal


def test_an_unknown_key_names_a_few_keys_not_all(workdir, capsys):
    assert core.train.main(command("train", ["--set", "zzz=1"], workdir)) == 2
    named = capsys.readouterr().err.split("the nearest valid keys are ")[1].split(", ")
    assert 1 <= len(named) <= 4


@pytest.mark.parametrize("cli", ALL)
def test_the_real_command_exits_2_with_one_line(cli, workdir):
    """The same through ``python -m``: argparse's own exit paths would print usage text."""
    proc = subprocess.run([sys.executable, "-m", MODULES[cli], *command(cli, ["--set", "epochs"], workdir)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --set epochs: write KEY=VALUE, e.g. --set epochs=20"], proc.stderr


def test_an_image_folder_is_checked_by_its_listing_alone(tmp_path):
    """Counted by file names (nothing decoded), as far as the check needs, by the launcher without torch."""
    from core import preflight
    from core.profiles import profile_config

    for split, classes in (("train", ("a", "b")), ("val", ("a", "b"))):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(3):
                (tmp_path / split / name / f"{i}.JPEG").write_bytes(b"")
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")

    def config(**overrides):
        return profile_config("vits16_imagenet", {"data.path": str(tmp_path), "data.num_workers": 0, **overrides})
    preflight.check(config(batch_size=6))
    with pytest.raises(preflight.ConfigError, match="batch_size=8 exceeds the 6 training images"):
        preflight.check(config(batch_size=8))
    with pytest.raises(preflight.ConfigError, match="data.train_subset=7 exceeds the 6 train images"):
        preflight.check(config(batch_size=2, **{"data.train_subset": 7}))
    (tmp_path / "val" / "b").rename(tmp_path / "val" / "c")
    with pytest.raises(preflight.DataNotFoundError, match="both need the same class folders"):
        preflight.check(config(batch_size=2))
    with pytest.raises(preflight.DataNotFoundError, match="does not exist on this machine"):
        preflight.check(config(batch_size=2, **{"data.path": str(tmp_path / "nowhere")}))


def test_the_launcher_checks_the_data_without_torch():
    script = ("import sys; from studies import plan, spec; "
              "runs = plan.expand(spec.load('centering_momentum'), 'tiny', {'data.train_subset': 70000}); "
              "print(plan.data_problems(runs, 'tiny', 1)); print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    problems, torch_loaded = proc.stdout.strip().splitlines()
    assert "every run on profile tiny: data.train_subset=70000 exceeds the 60000" in problems
    assert torch_loaded == "False"
