"""What a study's report page says, in which order; and the page that puts all studies together.

The order follows a reader's questions: is it finished? what exactly ran? what came out, beside
the paper? what do the curves show? which run is which? and how were marks and verdicts decided?
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Mapping

import pandas as pd

from core import collapse
from reports import fmt, provenance, tables, verdict
from core.collapse import CollapseRule
from reports.document import (Badge, Block, Bullets, Code, Figure, Heading, Link, Notice, Paragraph, Strong, Table,
                              relative)
from reports.load import StudyResults, default_results
from reports.stats import CONFIDENCE
from studies import spec

BADGES = {verdict.MATCHES: "matches", verdict.COLLAPSED_AS_PAPER: "collapsed", verdict.DIFFERS: "differs",
          verdict.PENDING: "other", verdict.NO_COMPARISON: "other"}
CAPTIONS = {
    "knn": "k-NN top-1 per setting: this study's mean over seeds with its 95 % t-interval (each seed a dot) "
           "and the paper's number as a second series; collapsed settings are marked.",
    "entropy_kl": "Target entropy h(P_t) and KL(P_t || P_s) over training, one line per setting (mean over seeds, "
                  "band: range over seeds), as in the paper's Fig. 7: collapse drives KL to 0, with h(P_t) going "
                  "to 0 (one dimension) or to ln K (uniform).",
    "runs": "Every run: the training loss (left axis, per logged iteration) and the k-NN top-1 accuracy at each "
            "evaluation (right axis); settings down, seeds across.",
}


def progress_line(results: StudyResults) -> str:
    """"complete: n of n runs done", or "incomplete: n of m runs done (1 running, ...)"."""
    p = results.progress()
    if p["done"] == p["total"]:
        return f"complete: {p['done']} of {p['total']} runs done"
    rest = ", ".join(f"{p[s]} {s}" for s in ("running", "failed", "missing"))
    return f"incomplete: {p['done']} of {p['total']} runs done ({rest})"


def progress_notice(results: StudyResults) -> Notice:
    """The progress line, boxed; an incomplete study says how to rebuild and how to retry."""
    p = results.progress()
    if p["done"] == p["total"]:
        return Notice([progress_line(results)], "ok")
    where = "" if results.results_dir == default_results(results.name).absolute() else \
        f" --results {results.results_dir}"
    use = ("every run failed, so the tables have no k-NN numbers; the Runs section has each error"
           if p["failed"] == p["total"] else "the tables use the finished runs")
    parts: list = [f"{progress_line(results)}; {use}. Rebuild with ",
                   Code(f"python -m reports.build {results.name}{where}")]
    if p["failed"]:
        parts += ["; rerun the failed ones with ",
                  Code(f"python -m studies.run {_study_argument(results)}{where} --retry-failed")]
    return Notice(parts, "warning")


def study_page(results: StudyResults, table: pd.DataFrame, figures: Mapping[str, Mapping[str, Path]],
               files: Mapping[str, Path], folder: Path, rule: CollapseRule) -> list[Block]:
    axis = " × ".join(a["name"] for a in results.axes)
    header, rows = tables.display(results, table)
    status_column = header.index("verdict")
    cells = [[Badge(cell, BADGES[cell]) if i == status_column and cell in BADGES else cell
              for i, cell in enumerate(row)] for row in rows]
    return [
        Heading(f"{results.name}: DINO ablation report", 1),
        Paragraph([results.plan.get("description", "")]),
        progress_notice(results),
        Paragraph([f"Built {_now()} from {results.results_dir}."]),
        Heading("What was run"),
        Table(["", ""], [[Strong(name), value] for name, value in provenance.facts(results)]),
        Heading(f"k-NN accuracy per {axis}"),
        Table(header, cells),
        Paragraph(["Also as ", *_links(files, folder), "."]),
        Heading("Verdicts"),
        Bullets([[Strong(row["setting"]), " ", Badge(row["verdict_status"], BADGES[row["verdict_status"]]),
                  f" {row['verdict']}"] for _, row in table.iterrows()]),
        Heading("Plots"),
        *[Figure(paths["png"], CAPTIONS[stem], paths.get("svg")) for stem, paths in figures.items()],
        Heading("Runs"),
        Paragraph(["Every attempt in the ledger. Only the latest attempt of a planned run counts in the tables; "
                   "earlier (superseded) and failed attempts count in the cost."]),
        runs_table(results, folder),
        Heading("How this report decides"),
        Bullets([[f"n: the finished seeds of a setting (of those planned); mean, sample standard deviation and a "
                  f"{CONFIDENCE:.0%} interval from Student's t with n - 1 degrees of freedom; one seed shows no "
                  "spread and no interval."],
                 ["k-NN: the teacher's, as in the paper; the student's, where the trainer measured it too, gets "
                  "the same statistics over the seeds that have it (\"k of n\" when not all do)."],
                 [f"Collapse: {rule.describe()}. A setting is marked when its seeds collapsed; \"in k of n\" when "
                  "only some did."],
                 ["Verdict: a row is judged on the paper's direction and on collapse, not on absolute accuracy: "
                  f"the paper's best non-collapsing setting is the reference (on a grid, per combination of the axes "
                  f"without paper numbers); differences under {verdict.TIE:g} "
                  "points in the paper, or under the larger of that and the rows' combined 95 % half-widths here, "
                  "count as level; a paper number <= "
                  f"{verdict.PAPER_COLLAPSE_MAX:g} means the paper's run collapsed, as does turning off centering "
                  "(one dimension) or sharpening (uniform)."],
                 ["Δ paper is shown only for profiles at the paper's scale ("
                  + ", ".join(verdict.PAPER_SCALE_PROFILES) + ")."],
                 ["Cost: GPU-hours = GPUs x wall hours (CPU-hours likewise), summed over requeue segments, for "
                  "every attempt including failed and superseded ones."]]),
    ]


def runs_table(results: StudyResults, folder: Path) -> Table:
    order = {setting: i for i, setting in enumerate(results.settings)}
    runs = results.runs.assign(_order=results.runs["setting"].map(order).astype(float)).sort_values(
        ["_order", "seed", "attempt"], na_position="last")
    unit = tables.cost_unit(results)
    rows = []
    for _, r in runs.iterrows():
        note = "; ".join(text for text, applies in (
            ("not in the current plan (an earlier launch of this study)", not r["planned"]),
            ("superseded by a later attempt", r["superseded"]),
            (str(r["error"]), not pd.isna(r["error"]))) if applies)
        rows.append([r["label"], str(r["attempt"]), r["state"], f"{r['epochs_done']}/{_count(r['epochs'])}",
                     fmt.number(r["knn_top1"]), fmt.number(r["knn_top5"]), fmt.number(r["target_entropy"], 3),
                     fmt.number(r["kl"], 3), collapse.mark(r["collapse"]), fmt.number(r["wall_seconds"] / 60, 1),
                     fmt.hours(r[unit]), "" if pd.isna(r["start"]) else r["start"].strftime("%Y-%m-%d %H:%M"),
                     note, _run_link(str(r["run_id"]), Path(r["sacred_dir"]), folder, results.results_dir)])
    return Table(["run", "attempt", "state", "epochs", "top-1", "top-5", "h(P_t)", "KL", "collapse", "wall (min)",
                  fmt.UNITS[unit], "started (UTC)", "note", "sacred run"], rows)


def _run_link(run_id: str, sacred_dir: Path, folder: Path, results_dir: Path):
    """A link to the run's sacred folder from a page inside the results folder; the bare run id
    from a published copy elsewhere, where that folder does not exist."""
    inside = Path(folder).absolute().is_relative_to(Path(results_dir).absolute())
    return Link(run_id, relative(sacred_dir, folder)) if inside else run_id


def summary_page(frame: pd.DataFrame, reports: Mapping[str, Path], folder: Path,
                 files: Mapping[str, Path]) -> list[Block]:
    """All studies on one page, one headline row each, with links to their own reports."""
    header, rows = tables.combined_display(frame)
    cells = [[Link(row[0], relative(reports[row[0]], folder)) if row[0] in reports else row[0], *row[1:]]
             for row in rows]
    return [Heading("DINO ablations: all studies", 1),
            Paragraph([f"Built {_now()}. One row per study: its best setting here and in the paper, how many of its "
                       "rows agree with the paper (direction or collapse; pending rows and rows without a paper "
                       "number are not judged), what collapsed, and what it cost."]),
            Table(header, cells),
            Paragraph(["Also as ", *_links(files, folder), ". Each study's own report has the details."])]


def _links(files: Mapping[str, Path], folder: Path) -> list:
    parts: list = []
    for i, (name, path) in enumerate(files.items()):
        parts += [", " if i else "", Link(name, relative(path, folder))]
    return parts


def _study_argument(results: StudyResults) -> str:
    """How ``studies.run`` names this study: its name if shipped in ablations/, else its file."""
    shipped = spec.available().get(results.name)
    file = results.plan.get("file")
    return results.name if not file or (shipped and shipped.resolve() == Path(file).resolve()) else file


def _count(value) -> str:
    return fmt.DASH if pd.isna(value) else str(int(value))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
