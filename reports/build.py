"""``python -m reports.build NAME`` (or ``--all``): write a study's report from what is recorded.

A report is rebuilt from scratch each time from the ledger and the sacred folders, so it can be
built at any moment, also while runs are still going (the page then says "incomplete: n of m
runs"); the studies engine calls ``build_report`` when a study finishes. Output, beside the
results (``runs/<study>/`` by default, like ``python -m studies.run``)::

    <results>/report/
      report.md, report.html     the page (the HTML is self-contained: images embedded)
      table.csv, table.tex, table.md   the study's table as numbers, for a paper, for pasting
      plots/{knn,entropy_kl,runs}.{png,svg}
      plots/attention.png        the teachers' attention maps, where a finished run has a checkpoint
      factors.csv                which factor matters: studies of two axes or more
      data/{runs,metrics}.{csv,parquet}   with --export: the frames, for one's own analysis
    <results>/baselines/<digest>.json     the reference k-NN numbers, measured by the first build
                                          that needs them (``reports.references``; --no-baselines: not)

A report is made of whatever is recorded: runs that failed at start (no metric at all), failed
or were killed part-way, were requeued, or are still going; a study whose every run failed gets a
report that says so.

``--all`` builds every study found under ``--runs`` (default ``runs/``) and the combined table of
all studies in ``<runs>/report/summary.{md,html,csv,tex}``; shipped studies not run yet appear
as "not run". A study whose report cannot be built (its ledger gone, say) is skipped with one
line on stderr and appears as "not built"; the others are built all the same. Exit status: 0
when a report was built (also with studies skipped), 1 when ``--all`` found studies but could
build none, 2 when there is nothing to report on (no results folder, no ledger) or the arguments
are wrong. ``--publish DIR`` (with ``--all``) also writes a copy meant for version control:
``DIR/summary.md`` and ``DIR/<study>/`` with the Markdown pages, tables and PNG plots, but no
HTML (its images are embedded, so it would store every figure twice), no SVG (dense curves make
them several times the PNG's size), no links into run folders (those stay on the machine that
ran the study) and no machine's paths or host names.

A study's report is written into a hidden sibling folder and renamed into place once complete
(swapped with the previous one in one step on Linux), so a build killed part-way (a launcher
killed while writing) leaves the previous report whole, and a page open in a browser or a
second build at the same time never sees half a report; the next build removes what a killed
one left. A rebuild replaces the whole folder: files only an earlier build wrote (an
``--export``) go with it. The summary's files are each written through a temporary file and a
rename.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import math
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Iterator, Sequence

from core import cli
from core.collapse import CollapseRule
from core.files import write_text_atomic
from reports import document, importance, page, plots, tables
from reports.fmt import tex
from reports.load import (
    EXPORT_FORMATS,
    ReportError,
    StudyResults,
    default_results,
    export,
    load_study,
)
from reports.noise import SEED_NOISE
from reports.plots import attention, knn, runs, training
from studies import spec
from studies.layout import PLAN, Layout
from studies.ledger import storage_problem



def build_report(study_name: str, results_dir: str | Path | None = None, *, storage: str | None = None,
                 rule: CollapseRule = CollapseRule(), export_format: str | None = None, baselines: bool = True,
                 options: plots.Options = plots.Options()) -> Path:
    """Build (or rebuild) one study's report and return the path of its ``report.html``.

    ``results_dir`` defaults to ``runs/<study_name>``; ``storage`` to the ledger the results
    folder holds; ``baselines``: measure the reference k-NN numbers not cached yet. Raises
    ``ReportError`` (one line: what is missing and what to run) when there is nothing to report on.
    """
    results = _load(study_name, results_dir, storage, rule)
    return write_report(page.contents(results, baselines), rule, export_format, options=options)


def _load(study_name: str, results_dir: str | Path | None, storage: str | None, rule: CollapseRule) -> StudyResults:
    results = load_study(results_dir or default_results(study_name), storage, rule)
    if results.name != study_name:
        raise ReportError(f"{results.results_dir} holds study {results.name!r}, not {study_name!r}")
    return results


def write_report(report: page.Contents, rule: CollapseRule, export_format: str | None = None,
                 folder: Path | None = None, portable: bool = False, options: plots.Options = plots.Options()) -> Path:
    """Write the report into ``folder`` (default ``<results>/report``), replacing what is there
    only once the new one is complete; returns its page: ``report.html``, or ``report.md`` for a
    ``portable`` copy (Markdown and PNG only, no machine's paths)."""
    folder = Path(folder or Layout(report.results.results_dir).report).absolute()
    with _staged(folder) as staging:
        name = _write_files(report, rule, export_format, staging, portable, options)
    return folder / name


def _write_files(report: page.Contents, rule: CollapseRule, export_format: str | None, folder: Path,
                 portable: bool, options: plots.Options) -> str:
    """Every file of the report, in ``folder``; the name of its page. Links are relative to
    ``folder``, which is why it must be a sibling of the report's final place."""
    results, table = report.results, report.table
    header, rows = tables.display(results, table)
    notes = [document.Paragraph([" ".join(report.notes)])] if report.notes else []
    files = {"table.csv": folder / "table.csv", "table.tex": folder / "table.tex", "table.md": folder / "table.md"}
    write_text_atomic(files["table.csv"], table.to_csv(index=False))
    write_text_atomic(files["table.tex"], tables.latex(results, table, report.notes))
    write_text_atomic(files["table.md"], document.markdown([document.Table(header, rows), *notes], folder))
    if report.factors:
        write_text_atomic(folder / importance.FILE, report.factors.frame().to_csv(index=False))
    if export_format:
        files.update({path.name: path for path in export(results, folder / "data", export_format)})
    noise = SEED_NOISE.get(results.plan["profile"])
    formats = ("png",) if portable else ("png", "svg")
    with plots.style():
        drawn = {"knn": (knn.knn_figure(results, table, report.references, noise),
                         knn.caption(results, table, report.references, noise)),
                 "entropy_kl": (training.entropy_kl_figure(results, report.curves, rule, options),
                                training.caption(results, rule, options)),
                 "runs": (runs.runs_figure(results, report.curves), runs.caption(report.curves)),
                 "attention": (attention.attention_figure(report.attention), attention.caption())}
        figures = []
        for stem, (fig, caption) in drawn.items():
            if fig is None:  # no run has a checkpoint to draw from: the page says why
                continue
            # the attention maps are pixels: an SVG would only wrap the same image, at twice the cost
            paths = plots.save(fig, folder / "plots", stem, ("png",) if stem == "attention" else formats)
            figures.append(document.Figure(paths["png"], page.TITLES[stem], caption, paths.get("svg")))
    blocks = page.study_page(report, figures, files, folder, rule, portable)
    write_text_atomic(folder / "report.md", document.markdown(blocks, folder))
    if portable:
        return "report.md"
    write_text_atomic(folder / "report.html", document.to_html(blocks, f"{results.name}: DINO ablation report", folder))
    return "report.html"


@contextlib.contextmanager
def _staged(folder: Path) -> Iterator[Path]:
    """An empty hidden sibling of ``folder`` to write the report into, put in place of ``folder``
    when the block ends without error, removed in any case (holding the previous report by then).
    Siblings that builds killed on this host left behind are removed first."""
    prefix = f".{folder.name}.{socket.gethostname()}."
    for left in folder.parent.glob(f"{prefix}*"):
        pid = left.name[len(prefix):].split(".")[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):  # own: an earlier process's
            shutil.rmtree(left, ignore_errors=True)
    staging = folder.with_name(f"{prefix}{os.getpid()}.partial")
    staging.mkdir(parents=True)
    previous = None
    try:
        yield staging
        previous = _put_in_place(staging, folder)
    finally:
        for path in (staging, previous):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)


def _put_in_place(staging: Path, folder: Path) -> Path | None:
    """Rename ``staging`` to ``folder``; returns where the previous report now is, None if there
    was none."""
    try:
        staging.rename(folder)
        return None
    except OSError as error:  # a previous report is there (rename only replaces an empty folder)
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if _exchange(staging, folder):
        return staging
    previous = staging.with_suffix(".previous")  # a filesystem that cannot swap: no report for a moment
    folder.rename(previous)
    staging.rename(folder)
    return previous


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # Linux <fcntl.h>, <linux/fs.h>


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step, with Linux's renameat2(RENAME_EXCHANGE); False where the
    system (macOS, Windows) or the filesystem (NFS) cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _alive(pid: int) -> bool:
    """Whether a build with this pid may still be writing (signal 0 only asks if it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def build_all(runs_root: str | Path = "runs", *, rule: CollapseRule = CollapseRule(), export_format: str | None = None,
              publish: str | Path | None = None, baselines: bool = True,
              options: plots.Options = plots.Options()) -> tuple[Path, dict[str, Path], list[str]]:
    """Every study's report under ``runs_root`` and the combined page (and their copy for
    version control in ``publish``); returns the combined page's path, the reports built and one
    line per study skipped because its report could not be built."""
    root = Path(runs_root).absolute()
    found = {p.parent.name for p in root.glob(f"*/{PLAN}")}
    if not found:
        raise ReportError(f"{root}: no study results there (no */{PLAN}); run `python -m studies.run NAME` "
                          "first, or give --runs DIR")
    names = list(spec.available()) + sorted(found - set(spec.available()))
    studies, reports, published, skipped = [], {}, {}, {}
    for name in names:
        if name not in found:
            studies.append((name, None, None))
            continue
        try:
            report = page.contents(load_study(root / name, rule=rule), baselines)
            html = write_report(report, rule, export_format, options=options)
            if publish:
                published[name] = write_report(report, rule, folder=Path(publish).absolute() / name, portable=True,
                                               options=options)
        except Exception as error:  # whatever one study's records hold, the other studies get their reports
            why = str(error) if isinstance(error, ReportError) else f"{type(error).__name__}: {error}"
            skipped[name] = why.splitlines()[0]  # one line per study, however long the error
            studies.append((name, None, None))
            continue
        reports[name] = html
        studies.append((name, report.results, report.table))
    frame = tables.combined(studies, skipped)
    if publish:
        write_summary(Path(publish).absolute(), frame, published, portable=True)
    return write_summary(Layout(root).report, frame, reports), reports, [f"skipped {n}: {w}" for n, w in skipped.items()]


def write_summary(folder: Path, frame, reports: dict[str, Path], portable: bool = False) -> Path:
    header, rows = tables.combined_display(frame)
    files = {"summary.csv": folder / "summary.csv", "summary.tex": folder / "summary.tex"}
    write_text_atomic(files["summary.csv"], frame.to_csv(index=False))
    caption = tex("DINO ablations: each study's best setting here and in the paper, agreement with the paper, "
                  "collapse and cost.")
    write_text_atomic(files["summary.tex"], tables.tabular([tex(h) for h in header], [[tex(c) for c in row] for row in rows],
                                                "l" * len(header), caption, "all-studies"))
    blocks = page.summary_page(frame, reports, folder, files)
    write_text_atomic(folder / "summary.md", document.markdown(blocks, folder))
    if portable:
        return folder / "summary.md"
    write_text_atomic(folder / "summary.html", document.to_html(blocks, "DINO ablations: all studies", folder))
    return folder / "summary.html"


def parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m reports.build", description="Build a study's report (tables beside "
                                "the paper, entropy/KL plots, verdicts) from its ledger and sacred runs, at any time.",
                                epilog="exit status: 0 a report was built (with --all: at least one; each study "
                                "skipped gets one line on stderr), 1 --all could build none of the studies it found, "
                                "2 nothing to report on or bad arguments")
    p.add_argument("study", nargs="?", help="study name (or its .toml file); see python -m studies.run --list")
    p.add_argument("--all", action="store_true", help="every study under --runs, plus the combined table")
    p.add_argument("--results", metavar="DIR", help="the study's results folder (default: runs/<study>)")
    p.add_argument("--runs", metavar="DIR", default="runs", help="with --all: the folder holding <study>/ results "
                   "folders (default: runs)")
    p.add_argument("--storage", metavar="URL", help="the ledger, if the study was run with --storage")
    p.add_argument("--publish", metavar="DIR", help="with --all: also write the Markdown pages, tables and plots "
                   "to DIR for version control, e.g. docs/results")
    p.add_argument("--export", choices=EXPORT_FORMATS, help="also write the runs and metrics frames to report/data/")
    p.add_argument("--collapse-kl", type=float, default=CollapseRule.kl_max, metavar="NATS",
                   help=f"final KL below which a run counts as collapsed (default {CollapseRule.kl_max:g}; another "
                   "value recomputes every run's verdict instead of reading the one it recorded)")
    p.add_argument("--smooth", type=int, default=0, metavar="N", help="draw the training curves as a rolling mean "
                   "over N logged iterations (the caption says so)")
    p.add_argument("--per-seed", action="store_true", help="draw each seed's training curves, not their mean and range")
    p.add_argument("--no-baselines", action="store_true", help="measure no reference k-NN (random network, raw "
                   "pixels) not cached yet; cached ones are still shown")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except cli.UsageError as error:
        return cli.refuse(str(error))
    problems = _argument_problems(args)
    if problems:
        return cli.refuse(problems)
    rule = CollapseRule(kl_max=args.collapse_kl)
    options = plots.Options(args.smooth, args.per_seed)
    baselines = not args.no_baselines
    if args.all:
        try:
            summary, reports, skipped = build_all(args.runs, rule=rule, export_format=args.export,
                                                  publish=args.publish, baselines=baselines, options=options)
        except ReportError as error:
            return cli.refuse(str(error))
        for line in skipped:
            print(line, file=sys.stderr)
        print(f"all studies: {summary}" + (f"\npublished: {Path(args.publish) / 'summary.md'}" if args.publish else ""))
        return 0 if reports else 1
    name = Path(args.study).stem if args.study.endswith(".toml") else args.study
    try:
        results = _load(name, args.results, args.storage, rule)
        html = write_report(page.contents(results, baselines), rule, args.export, options=options)
    except ReportError as error:
        return cli.refuse(str(error))
    print(f"{name}: {page.progress_line(results)}")
    print(f"report: {html}\n        {html.with_name('report.md')}")
    return 0


def _argument_problems(args: argparse.Namespace) -> list[str]:
    """Every reason the command line cannot be served, one line each, before anything is read."""
    problems = []
    if args.all == bool(args.study):
        problems.append("name one study, or give --all")
    if args.publish is not None and not args.all:
        problems.append("--publish copies every study's report: give --all")
    if args.all and (args.results or args.storage):
        problems.append("--results and --storage name one study's folder; with --all use --runs")
    if not (math.isfinite(args.collapse_kl) and args.collapse_kl > 0):
        problems.append(f"--collapse-kl {args.collapse_kl}: give a positive, finite number of nats")
    if args.smooth < 0:
        problems.append("--smooth must be 0 (no smoothing) or a number of logged iterations")
    for value, option in ((args.results, "--results"), (args.runs, "--runs")):
        problem = value is not None and cli.folder_problem(value, option, writing=False)
        if problem:
            problems.append(problem)
    problem = args.publish is not None and cli.folder_problem(args.publish, "--publish")
    if problem:
        problems.append(problem)
    problem = args.storage is not None and storage_problem(args.storage, writing=False)
    if problem:
        problems.append(problem)
    return problems


if __name__ == "__main__":
    sys.exit(main())
