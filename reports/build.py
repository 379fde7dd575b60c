"""``python -m reports.build NAME`` (or ``--all``): write a study's report from what is recorded.

A report is rebuilt from scratch each time from the ledger and the sacred folders, so it can be
built at any moment, also while runs are still going (the page then says "incomplete: n of m
runs"); the studies engine calls ``build_report`` when a study finishes. Output, beside the
results (``runs/<study>/`` by default, like ``python -m studies.run``)::

    <results>/report/
      report.md, report.html     the page (the HTML is self-contained: images embedded)
      table.csv, table.tex, table.md   the study's table as numbers, for a paper, for pasting
      plots/{knn,entropy_kl,runs}.{png,svg}
      data/{runs,metrics}.{csv,parquet}   with --export: the frames, for one's own analysis

``--all`` builds every study found under ``--runs`` (default ``runs/``) and the combined table of
all studies in ``<runs>/report/summary.{md,html,csv,tex}``; shipped studies not run yet appear
as "not run". ``--publish DIR`` (with ``--all``) also writes a copy meant for version control:
``DIR/summary.md`` and ``DIR/<study>/`` with the Markdown pages, tables and PNG plots, but no
HTML (its images are embedded, so it would store every figure twice), no SVG (dense curves make
them several times the PNG's size) and no links into run folders (those stay on the machine that
ran the study). Every file is written through a temporary file and a rename, so a page open in a
browser, or a second build running at the same time, never sees half a file.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from reports import document, page, plots, tables
from reports.collapse import CollapseRule
from reports.fmt import tex
from reports.load import EXPORT_FORMATS, PLAN_FILE, ReportError, StudyResults, curves, default_results, export, \
    load_study
from studies import spec

REPORT_DIR = "report"


def build_report(study_name: str, results_dir: str | Path | None = None, *, storage: str | None = None,
                 rule: CollapseRule = CollapseRule(), export_format: str | None = None) -> Path:
    """Build (or rebuild) one study's report and return the path of its ``report.html``.

    ``results_dir`` defaults to ``runs/<study_name>``; ``storage`` to the ledger the results
    folder holds. Raises ``ReportError`` (one line: what is missing and what to run) when there
    is nothing to report on.
    """
    return write_report(_load(study_name, results_dir, storage, rule), rule, export_format)


def _load(study_name: str, results_dir: str | Path | None, storage: str | None, rule: CollapseRule) -> StudyResults:
    results = load_study(results_dir or default_results(study_name), storage, rule)
    if results.name != study_name:
        raise ReportError(f"{results.results_dir} holds study {results.name!r}, not {study_name!r}")
    return results


def write_report(results: StudyResults, rule: CollapseRule, export_format: str | None = None,
                 folder: Path | None = None, portable: bool = False) -> Path:
    """Write the report into ``folder`` (default ``<results>/report``); returns its page:
    ``report.html``, or ``report.md`` for a ``portable`` copy (Markdown and PNG only)."""
    folder = folder or results.results_dir / REPORT_DIR
    table = tables.summary(results)
    header, rows = tables.display(results, table)
    files = {"table.csv": folder / "table.csv", "table.tex": folder / "table.tex", "table.md": folder / "table.md"}
    _write(files["table.csv"], table.to_csv(index=False))
    _write(files["table.tex"], tables.latex(results, table))
    _write(files["table.md"], document.markdown([document.Table(header, rows)], folder))
    if export_format:
        files.update({path.name: path for path in export(results, folder / "data", export_format)})
    run_curves = curves(results)
    with plots.style():
        figures = {"knn": plots.knn_figure(results, table),
                   "entropy_kl": plots.entropy_kl_figure(results, run_curves, rule),
                   "runs": plots.runs_figure(results, run_curves)}
        formats = ("png",) if portable else ("png", "svg")
        saved = {stem: plots.save(fig, folder / "plots", stem, formats) for stem, fig in figures.items()}
    blocks = page.study_page(results, table, saved, files, folder, rule)
    _write(folder / "report.md", document.markdown(blocks, folder))
    if portable:
        return folder / "report.md"
    _write(folder / "report.html", document.to_html(blocks, f"{results.name}: DINO ablation report", folder))
    return folder / "report.html"


def build_all(runs_root: str | Path = "runs", *, rule: CollapseRule = CollapseRule(),
              export_format: str | None = None, publish: str | Path | None = None) -> tuple[Path, list[str]]:
    """Every study's report under ``runs_root`` and the combined page (and their copy for
    version control in ``publish``); returns the combined page's path and one line per study
    that could not be built."""
    root = Path(runs_root).absolute()
    found = {p.parent.name for p in root.glob(f"*/{PLAN_FILE}")}
    if not found:
        raise ReportError(f"{root}: no study results there (no */{PLAN_FILE}); run `python -m studies.run NAME` "
                          "first, or give --runs DIR")
    names = list(spec.available()) + sorted(found - set(spec.available()))
    studies, reports, published, errors = [], {}, {}, []
    for name in names:
        if name not in found:
            studies.append((name, None, None))
            continue
        try:
            results = load_study(root / name, rule=rule)
            reports[name] = write_report(results, rule, export_format)
            if publish:
                published[name] = write_report(results, rule, folder=Path(publish).absolute() / name, portable=True)
            studies.append((name, results, tables.summary(results)))
        except ReportError as error:
            errors.append(f"{name}: {error}")
            studies.append((name, None, None))
    frame = tables.combined(studies)
    if publish:
        write_summary(Path(publish).absolute(), frame, published, portable=True)
    return write_summary(root / REPORT_DIR, frame, reports), errors


def write_summary(folder: Path, frame, reports: dict[str, Path], portable: bool = False) -> Path:
    header, rows = tables.combined_display(frame)
    files = {"summary.csv": folder / "summary.csv", "summary.tex": folder / "summary.tex"}
    _write(files["summary.csv"], frame.to_csv(index=False))
    caption = tex("DINO ablations: each study's best setting here and in the paper, agreement with the paper, "
                  "collapse and cost.")
    _write(files["summary.tex"], tables.tabular([tex(h) for h in header], [[tex(c) for c in row] for row in rows],
                                                "l" * len(header), caption, "all-studies"))
    blocks = page.summary_page(frame, reports, folder, files)
    _write(folder / "summary.md", document.markdown(blocks, folder))
    if portable:
        return folder / "summary.md"
    _write(folder / "summary.html", document.to_html(blocks, "DINO ablations: all studies", folder))
    return folder / "summary.html"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reports.build", description="Build a study's report (tables beside "
                                "the paper, entropy/KL plots, verdicts) from its ledger and sacred runs, at any time.")
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
                   help=f"final KL below which a run counts as collapsed (default {CollapseRule.kl_max:g})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.all == bool(args.study):
        parser().error("name one study, or give --all")
    if args.publish and not args.all:
        parser().error("--publish copies every study's report: give --all")
    if args.all and (args.results or args.storage):
        parser().error("--results and --storage name one study's folder; with --all use --runs")
    if args.collapse_kl <= 0:
        parser().error("--collapse-kl must be positive")
    rule = CollapseRule(kl_max=args.collapse_kl)
    if args.all:
        try:
            summary, errors = build_all(args.runs, rule=rule, export_format=args.export, publish=args.publish)
        except ReportError as error:
            print(error, file=sys.stderr)
            return 2
        for line in errors:
            print(line, file=sys.stderr)
        print(f"all studies: {summary}" + (f"\npublished: {Path(args.publish) / 'summary.md'}" if args.publish else ""))
        return 1 if errors else 0
    name = Path(args.study).stem if args.study.endswith(".toml") else args.study
    try:
        results = _load(name, args.results, args.storage, rule)
        html = write_report(results, rule, args.export)
    except ReportError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"{name}: {page.progress_line(results)}")
    print(f"report: {html}\n        {html.with_name('report.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
