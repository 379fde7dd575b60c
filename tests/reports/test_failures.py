"""Reports of real studies whose runs go wrong: no failed run ever blocks a report.

Two micro studies are run once for the module, at the same time. ``mixed`` (local processes, so
that a job can be signalled) holds a run that finishes, one whose timm model does not exist (it
fails before its first metric), one requeued part-way (the time-out signal, as in
tests/studies/test_local.py) and one SIGKILLed part-way once sacred has recorded its first
epochs. ``allfailed`` (the debug cluster, in-process) has only failures: a loss that turns NaN in
its second epoch and, again, a timm model that does not exist. The runs that are signalled last 8 and 200
epochs of 16 iterations: they are still training when the poll that waits for them returns.
Their reports are read as the launchers wrote them at the end; ``--all`` with studies it cannot
build, and builds killed while writing, work on copies.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

from reports import build
from reports.load import METRIC_DTYPES, curves, load_study
from tests.helpers import MICRO_SET
from tests.reports.by_hand import M_AXIS, baselines_by_hand, write_results  # noqa: F401 (an autouse fixture)
from tests.helpers import REPO, running_with_checkpoint, wait_for

# fails in its job before its first metric (the launcher cannot see timm's registry without torch)
NO_MODEL = {"backbone.name": "vit_no_such_model"}
LONG = {"data.train_subset": 1024}  # 16 iterations per epoch
REPORT_FILES = {"report.md", "report.html", "table.csv", "table.tex", "table.md",
                *(f"plots/{stem}.{fmt}" for stem in ("knn", "entropy_kl", "runs") for fmt in ("png", "svg"))}


def study_file(folder: Path, name: str, runs: dict[str, dict], **top) -> Path:
    """A one-axis study of micro runs (tests/conftest.py's MICRO_SET), ``runs``: label -> what
    that run changes; every run sets every key any run changes (a swept key leaves the base)."""
    swept = {key for changes in runs.values() for key in changes}
    values = [{"label": label, "set": {**{k: MICRO_SET[k] for k in swept if k in MICRO_SET}, **changes}}
              for label, changes in runs.items()]
    base = {k: v for k, v in MICRO_SET.items() if k not in swept}
    study = {"description": f"test study {name}", "set": {**base, "eval.every_epochs": 1}, **top,
             "axes": [{"name": "run", "values": values}]}
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(study))
    return path


def start(study: Path, results: Path, log: Path, *argv: str) -> subprocess.Popen:
    """``python -m studies.run`` in the background, its output in ``log`` (a pipe nobody reads
    while the test waits could fill up); no stdin: the debug cluster's pdb gives up at once."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "studies.run", str(study), "--results", str(results), *argv],
                                cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def training(results: Path, label: str, recorded: bool = False):
    """The RUNNING trial of ``label`` once it has checkpointed an epoch (and, if ``recorded``,
    once sacred has written an epoch and its k-NN to metrics.json), else None."""
    for trial in running_with_checkpoint(results, "mixed", 1, 1) or []:
        if trial.user_attrs["label"] == label and (not recorded or "knn.top1" in _metrics(trial)):
            return trial
    return None


def _metrics(trial) -> dict:
    try:
        return json.loads((Path(trial.user_attrs["sacred_dir"]) / "metrics.json").read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-rewrite
        return {}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The runs folder holding ``mixed/`` and ``allfailed/``, both launched to their end."""
    folder = tmp_path_factory.mktemp("failures")
    mixed = study_file(folder, "mixed", {"killed": {"epochs": 200, **LONG}, "requeued": {"epochs": 8, **LONG},
                                         "done": {"epochs": 2}, "nomodel": {"epochs": 2, **NO_MODEL}},
                       profiles={"tiny": {"resources": {"time_min": 5, "signal_delay_s": 30}}})
    allfailed = study_file(folder, "allfailed", {"nan": {"optim.lr": 1e6, "optim.warmup_epochs": 1, "epochs": 3},
                                                 "nomodel": NO_MODEL})
    runs = folder / "runs"
    launched = [start(mixed, runs / "mixed", folder / "mixed.log", "--max-parallel", "2"),
                start(allfailed, runs / "allfailed", folder / "allfailed.log", "--cluster", "debug")]
    try:
        requeued = wait_for(lambda: training(runs / "mixed", "run=requeued seed=0"), 300, "the run to requeue")
        os.kill(requeued.user_attrs["worker_pid"], signal.SIGUSR2)
        killed = wait_for(lambda: training(runs / "mixed", "run=killed seed=0", recorded=True), 300,
                          "the run to kill to record an epoch")
        os.kill(killed.user_attrs["worker_pid"], signal.SIGKILL)
        for proc in launched:
            proc.wait(timeout=300)
    finally:
        for proc in launched:
            proc.kill()
    for name in ("mixed", "allfailed"):
        log = (folder / f"{name}.log").read_text()
        assert "report not written" not in log and (runs / name / "report" / "report.html").is_file(), log[-3000:]
    return runs


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def runs_table_line(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {label} |"))


def test_failed_killed_and_requeued_runs_beside_a_finished_one(root):
    html = root / "mixed" / "report" / "report.html"  # written by the launcher at the study's end
    table = pd.read_csv(html.with_name("table.csv"))
    assert list(table["setting"]) == ["killed", "requeued", "done", "nomodel"]
    assert list(table["n"]) == [0, 1, 1, 0]
    assert list(table["verdict_status"]) == ["pending", "no comparison", "no comparison", "pending"]
    assert table["top1_mean"].notna().tolist() == [False, True, True, False]
    text = html.with_name("report.md").read_text()
    assert "incomplete: 2 of 4 runs done (0 running, 2 failed, 0 missing); the tables use the finished runs" in text
    runs = load_study(root / "mixed").runs.set_index("label")
    killed = runs.loc["run=killed seed=0"]
    assert killed["state"] == "failed" and killed["epochs_done"] >= 1
    assert 0 < killed["knn_top1"] <= 100  # the last k-NN it logged, shown but not counted
    assert f"| run=killed seed=0 | 1 | failed | {killed['epochs_done']}/200 |" in text
    assert killed["error"] in runs_table_line(text, "run=killed seed=0")  # the launcher saw its job die
    assert "| run=requeued seed=0 | 1 | done | 8/8 |" in text
    assert "| run=nomodel seed=0 | 1 | failed | 0/2 | — |" in text
    assert "ConfigError: backbone.name='vit_no_such_model'" in runs_table_line(text, "run=nomodel seed=0")
    assert REPORT_FILES <= files(html.parent)


def test_frames_keep_their_types_and_read_each_epoch_once(root):
    results = load_study(root / "mixed")
    for name in ("attempt", "step", "value"):
        assert results.metrics[name].dtype == METRIC_DTYPES[name]
    data = curves(results)
    assert data["epoch"].dtype == float and data["value"].dtype == float
    by_label = {label: part for label, part in data.groupby("label")}
    assert "run=nomodel seed=0" not in by_label  # it logged nothing
    assert len(by_label["run=killed seed=0"]) > 0
    requeued = by_label["run=requeued seed=0"]
    loss = requeued[(requeued["kind"] == "epoch") & (requeued["metric"] == "loss")]
    assert list(loss["step"]) == list(range(1, 9))  # both segments, each epoch once
    row = results.runs.set_index("label").loc["run=requeued seed=0"]
    info = json.loads((Path(row["sacred_dir"]) / "info.json").read_text())
    assert [s["status"] for s in info["segments"]] == ["REQUEUED", "COMPLETED"]
    assert row["wall_seconds"] == pytest.approx(info["wall_seconds"]) and row["cost_recorded"]


def test_a_study_whose_every_run_failed_says_so(root):
    html = root / "allfailed" / "report" / "report.html"
    text = html.with_name("report.md").read_text()
    assert "incomplete: 0 of 2 runs done (0 running, 2 failed, 0 missing); every run failed" in text
    nan = load_study(root / "allfailed").runs.set_index("label").loc["run=nan seed=0"]
    assert nan["state"] == "failed" and nan["epochs_done"] >= 1  # it failed part-way, after logging epochs
    assert nan["error"].startswith("NonFiniteLossError: loss is")
    assert f"| run=nan seed=0 | 1 | failed | {nan['epochs_done']}/3 |" in text
    assert nan["error"] in runs_table_line(text, "run=nan seed=0")
    assert "vit_no_such_model" in runs_table_line(text, "run=nomodel seed=0")
    table = pd.read_csv(html.with_name("table.csv"))
    assert list(table["n"]) == [0, 0] and list(table["verdict_status"]) == ["pending", "pending"]
    assert table["top1_mean"].isna().all()
    assert REPORT_FILES <= files(html.parent)


def test_all_skips_a_study_it_cannot_build_and_builds_the_others(root, tmp_path, capsys):
    broken = tmp_path / "runs"
    shutil.copytree(root, broken, ignore=shutil.ignore_patterns("report"))
    plan = json.loads((broken / "mixed" / "study.json").read_text())
    (broken / "noledger").mkdir()  # a study whose ledger is gone
    (broken / "noledger" / "study.json").write_text(json.dumps({**plan, "storage": str(tmp_path / "gone.journal")}))
    shutil.copytree(broken / "allfailed", broken / "badplan")  # one whose plan lacks what the reader expects
    damaged = json.loads((broken / "badplan" / "study.json").read_text())
    (broken / "badplan" / "study.json").write_text(json.dumps({k: v for k, v in damaged.items() if k != "axes"}))
    assert build.main(["--all", "--runs", str(broken)]) == 0
    skipped = capsys.readouterr().err.splitlines()
    assert skipped == ["skipped badplan: KeyError: 'axes'",
                       f"skipped noledger: {broken / 'noledger'}: no ledger at {tmp_path / 'gone.journal'}; give "
                       "--storage URL if the study used another one"]
    summary = pd.read_csv(broken / "report" / "summary.csv", dtype=str).set_index("study")["runs"]
    assert (summary["mixed"], summary["allfailed"], summary["collapse"]) == ("2/4", "0/2", "not run")
    assert (summary["noledger"], summary["badplan"]) == ("not built", "not built")
    for name in ("mixed", "allfailed"):
        assert (broken / name / "report" / "report.html").is_file()
    shutil.rmtree(broken / "mixed")
    shutil.rmtree(broken / "allfailed")
    assert build.main(["--all", "--runs", str(broken)]) == 1  # studies found, none could be built
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_hand_made_studies_with_no_metric_or_no_attempt_at_all(tmp_path):
    """Beyond the real runs: every run failed before its first metric, and a launch that died
    after writing study.json but before its first attempt (tests/reports/by_hand.py's writer)."""
    failed = [{"labels": {"m": m}, "seed": 0, "state": "failed", "epochs": (1, 0)} for m in M_AXIS["labels"]]
    for name, attempts, line in (("nometric", failed, "0 of 3 runs done (0 running, 3 failed, 0 missing); every run"),
                                 ("nothing", [], "0 of 3 runs done (0 running, 0 failed, 3 missing); the tables")):
        html = build.build_report(name, write_results(tmp_path / name, name, [M_AXIS], [0], attempts))
        assert line in html.with_name("report.md").read_text()
        assert list(pd.read_csv(html.with_name("table.csv"))["n"]) == [0, 0, 0]
        assert REPORT_FILES <= files(html.parent)


# A real build that SIGKILLs itself at an exact point of its writing: at the first audit event
# argv[1] ("open" for writing, "shutil.rmtree") on a path containing argv[2], {pid} its own pid.
KILL_AT = """
import os, signal, sys
from reports.build import main
event, pattern = sys.argv[1], sys.argv[2].format(pid=os.getpid())
def hook(name, args):
    path = args[0] if args and isinstance(args[0], (str, bytes, os.PathLike)) else ""
    if name == event and pattern in os.fsdecode(path) and (event != "open" or "w" in str(args[1])):
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
main(sys.argv[3:])
"""


def test_a_build_killed_while_writing_leaves_a_whole_report(root, tmp_path):
    results = tmp_path / "allfailed"
    shutil.copytree(root / "allfailed", results)
    report = results / "report"
    (report / "previous").write_text("the report before the rebuild")

    def killed_build(event: str, pattern: str) -> None:
        done = subprocess.run([sys.executable, "-c", KILL_AT, event, pattern, "allfailed", "--results", str(results)],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]

    def left_behind() -> list[Path]:
        return [p for p in results.iterdir() if p.name.startswith(".report.")]

    killed_build("open", "{pid}.partial/.report.md")  # tables and plots written, the page not yet
    assert files(report) == REPORT_FILES | {"previous"}  # the old report, whole
    (half,) = left_behind()
    assert files(half) == REPORT_FILES - {"report.md", "report.html"}
    killed_build("shutil.rmtree", "{pid}.partial")  # swapped in, the old one not yet removed
    assert files(report) == REPORT_FILES  # the new report, whole
    assert report.joinpath("report.html").read_text().endswith("</html>\n")
    (old,) = left_behind()  # the second build removed what the first left; its own holds the old report
    assert files(old) == REPORT_FILES | {"previous"}
