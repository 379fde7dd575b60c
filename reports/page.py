"""What a study's report page says, in which order; and the page that puts all studies together.

The order follows a reader's questions: is it finished? what exactly ran? what came out, beside
the paper (and, for a boundary study, where its setting turns runs to collapse)? what do the curves
show? which run is which? and how were marks and verdicts decided?
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from core import collapse
from core.collapse import CollapseRule
from reports import boundary, fmt, importance, labels, provenance, references, tables, verdict
from reports.attention import Attention, arm_maps
from reports.document import (Badge, Block, Bullets, Code, Figure, Heading, Link, Notice, Paragraph, Strong, Table,
                              relative)
from reports.load import StudyResults, curves, default_results
from reports.noise import SEED_NOISE
from reports.references import References
from reports.stats import CONFIDENCE, t_quantile
from studies import spec
from studies.layout import Layout

BADGES = {verdict.AGREES: "matches", verdict.COLLAPSED_AS_PAPER: "collapsed", verdict.DIFFERS: "differs",
          verdict.NOT_RESOLVED: "unresolved", verdict.PENDING: "other", verdict.NO_COMPARISON: "other"}
TITLES = {"knn": "k-NN top-1 per setting", "entropy_kl": "Entropies and KL over training", "runs": "Every run",
          "attention": "The teachers' attention maps"}


@dataclass(frozen=True)
class Contents:
    """What a study's report shows, computed once per build and written as often as asked (the
    report beside the results, its published copy)."""

    results: StudyResults
    references: References
    table: pd.DataFrame
    notes: list[str]  # the table's notes: references, the best setting and its ties
    curves: pd.DataFrame
    attention: Attention  # read from the runs' checkpoints: the costly part, done once
    factors: importance.Factors | None  # which factor matters: studies of two axes or more
    boundary: boundary.Search | None = None  # where a boundary study's setting turns runs to collapse


def contents(results: StudyResults, measure: bool = True) -> Contents:
    """The report's numbers; ``measure``: measure the baselines not yet cached (``reports.references``)."""
    found = references.references(results, compute=measure)
    table = tables.summary(results, found)
    return Contents(results, found, table, tables.table_notes(table, found), curves(results), arm_maps(results),
                    importance.factors(results), boundary.search(results))


def progress_line(results: StudyResults) -> str:
    """"complete: n of n runs done", or "incomplete: n of m runs done (1 running, ...)"."""
    p = results.progress()
    if p["done"] == p["total"]:
        return f"complete: {p['done']} of {p['total']} runs done"
    rest = ", ".join(f"{p[s]} {s}" for s in ("running", "failed", "missing"))
    return f"incomplete: {p['done']} of {p['total']} runs done ({rest})"


def progress_notice(results: StudyResults, portable: bool = False) -> Notice:
    """The progress line, boxed; an incomplete study says how to rebuild and how to retry."""
    p = results.progress()
    if p["done"] == p["total"]:
        return Notice([progress_line(results)], "ok")
    where = "" if results.results_dir == default_results(results.name).absolute() else \
        f" --results {'DIR' if portable else results.results_dir}"
    use = ("every run failed, so the tables have no k-NN numbers; the Runs section has each error"
           if p["failed"] == p["total"] else "the tables use the finished runs")
    parts: list = [f"{progress_line(results)}; {use}. Rebuild with ",
                   Code(f"python -m reports.build {results.name}{where}")]
    if p["failed"]:
        study = _study_argument(results)
        parts += ["; rerun the failed ones with ",
                  Code(f"python -m studies.run {provenance.scrub(study, results.results_dir) if portable else study}"
                       f"{where} --retry-failed")]
    return Notice(parts, "warning")


def study_page(report: Contents, figures: Sequence[Figure], files: Mapping[str, Path], folder: Path,
               rule: CollapseRule, portable: bool = False) -> list[Block]:
    """The page of one study; a ``portable`` one (published, kept in git) names no machine."""
    results, table = report.results, report.table
    axis = " × ".join(a["name"] for a in results.axes)
    header, rows = tables.display(results, table)
    status = header.index("verdict")
    cells = [[_badge(table.iloc[i]) if j == status and i < len(table) else cell for j, cell in enumerate(row)]
             for i, row in enumerate(rows)]
    source = "the study's ledger and sacred records" if portable else str(results.results_dir)
    return [
        Heading(f"{results.name}: DINO ablation report", 1),
        Paragraph([results.plan.get("description", "")]),
        progress_notice(results, portable),
        Paragraph([f"Built {_now()} from {source}."]),
        Heading("What was run"),
        Table(["", ""], [[Strong(name), value] for name, value in provenance.facts(results, portable)]),
        *boundary.section(report.boundary, rule, folder, portable),
        Heading(f"k-NN accuracy per {axis}"),
        Table(header, cells),
        *([Paragraph([" ".join(report.notes)])] if report.notes else []),
        Paragraph(["Also as ", *_links(files, folder), "."]),
        Heading("Verdicts"),
        Bullets([[Strong(row["label"]), " ", _badge(row), f": {row['verdict']}"] for _, row in table.iterrows()]),
        *_factor_section(report.factors),
        Heading("Plots"),
        *figures,
        *([Paragraph(["Attention maps: ", " ".join(report.attention.notes)
                      if not portable else provenance.scrub(" ".join(report.attention.notes), results.results_dir)])]
          if report.attention.notes else []),
        Heading("Runs"),
        Paragraph(["Every attempt in the ledger. Only the latest attempt of a planned run counts in the tables; "
                   "earlier (superseded) and failed attempts count in the cost."]),
        runs_table(results, folder, portable),
        Heading("How this report decides"),
        Bullets(_decisions(results, rule, portable)),
    ]


def _factor_section(found: importance.Factors | None) -> list[Block]:
    """Each factor's means and its PED-ANOVA share; nothing for a study of one axis."""
    if found is None:
        return []
    means, ranked = importance.display(found)
    return [
        Heading("Which factor matters"),
        Paragraph([f"Each factor's mean {found.metric} at each of its values, over every finished run at that value "
                   f"whatever the other axes and the seed (its main effect), with a {CONFIDENCE:.0%} t-interval over "
                   "those runs: wide where the other factors or the seeds move the metric."]),
        Table(*means),
        Paragraph(["Effect: how far apart a factor's means lie. PED-ANOVA share (optuna's "
                   "PedAnovaImportanceEvaluator, Watanabe et al. 2023): how much more the factor's values concentrate "
                   "among the best "
                   f"{importance.TOP:.0%} of the runs than among all of them, as shares summing to 1 ({found.sample}). "
                   "Also as ", Link(importance.FILE, importance.FILE), "."]),
        Table(*ranked),
    ]


def _decisions(results: StudyResults, rule: CollapseRule, portable: bool) -> list[list]:
    """The rules behind the marks and verdicts, each said once."""
    profile = results.plan["profile"]
    own = results.runs["collapse_recorded"]
    return [
        [f"n: the finished seeds of a setting (of those planned); mean, sample standard deviation and a "
         f"{CONFIDENCE:.0%} interval from Student's t with n - 1 degrees of freedom; one seed shows no spread and "
         "no interval."],
        ["Settings are named by what ran, the paper's value in brackets where the profile maps it to another."],
        ["k-NN: the teacher's, as in the paper; the student's, where the trainer measured it too, gets the same "
         "statistics over the seeds that have it (\"k of n\" when not all do). References: the same k-NN, seed 0, "
         "on a randomly initialised network of the runs' shape and on raw pixels, measured once per distinct data, "
         "k-NN, backbone and precision, and kept "
         + ("beside the results." if portable else f"in {Layout(results.results_dir).baselines}.")],
        [f"Collapse: each run's own verdict where it recorded one ({int(own.sum())} of {len(own)} attempts), "
         f"else computed here by the same rule: {rule.describe()}. A setting is marked when its seeds collapsed; "
         "\"in k of n\" when only some did."],
        ["Verdict: a row is judged on the paper's direction and on collapse, not on absolute accuracy. The paper's "
         "best non-collapsing setting is the reference (on a grid, per combination of the axes without paper "
         "numbers). A difference to it here has a 95 % interval: Welch's t-interval where both settings have two "
         "seeds or more, else the seed noise of the profile. A row agrees or differs only when that interval "
         f"excludes 0 (for settings the paper has within {verdict.TIE:g} points, agrees when it lies within "
         f"± {verdict.TIE:g}); otherwise it is not resolved at its seeds, with the seeds per setting that would "
         "resolve it, from the interval's width t(2n - 2) s sqrt(2 / n) at n seeds. A paper number <= "
         f"{verdict.PAPER_COLLAPSE_MAX:g} means the paper's run collapsed, as does turning off centering (one "
         "dimension) or sharpening (uniform)."],
        _noise_sentence(profile),
        ["Δ paper is shown only for profiles at the paper's scale (" + ", ".join(verdict.PAPER_SCALE_PROFILES) + ")."],
        ["Cost: GPU-hours = GPUs x wall hours (CPU-hours likewise), summed over requeue segments, for every attempt "
         "including failed and superseded ones."],
    ]


def _noise_sentence(profile: str) -> list:
    noise = SEED_NOISE.get(profile)
    if noise is None:
        return [f"Seed noise: none is recorded for profile {profile} (reports/noise.py), so a difference between "
                "one-seed settings is never resolved."]
    half = t_quantile(CONFIDENCE, noise.df) * noise.std * 2 ** 0.5
    return [f"Seed noise of {profile}: k-NN top-1 std {noise.std:g} points over {noise.seeds} seeds, measured with ",
            Code(noise.command), f"; two one-seed settings must differ by more than {half:.2f} points to be "
            "resolved."]


def _badge(row: pd.Series) -> Badge:
    return Badge(verdict.badge(row["verdict_status"], row["verdict_seeds"]), BADGES[row["verdict_status"]])


def runs_table(results: StudyResults, folder: Path, portable: bool = False) -> Table:
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
        note = provenance.scrub(note, results.results_dir) if portable else note
        rows.append([_run_label(results, r), str(r["attempt"]), r["state"], f"{r['epochs_done']}/{_count(r['epochs'])}",
                     fmt.number(r["knn_top1"]), fmt.number(r["knn_top5"]), fmt.number(r["target_entropy"], 3),
                     fmt.number(r["kl"], 3), _collapse_cell(r), fmt.number(r["wall_seconds"] / 60, 1),
                     fmt.hours(r[unit]), "" if pd.isna(r["start"]) else r["start"].strftime("%Y-%m-%d %H:%M"),
                     note, _run_link(str(r["run_id"]), Path(r["sacred_dir"]), folder, results.results_dir)])
    return Table(["run", "attempt", "state", "epochs", "top-1", "top-5", "h(P_t)", "KL", "collapse", "wall (min)",
                  fmt.UNITS[unit], "started (UTC)", "note", "sacred run"], rows)


def _collapse_cell(run: pd.Series) -> str:
    """The run's collapse verdict, and where it stopped if the early stop ended it."""
    if pd.notna(run.get("stopped_epoch")):
        return collapse.stopped_mark(run["collapse"], [int(run["stopped_epoch"])], int(run["epochs"]))
    return collapse.mark(run["collapse"])


def _run_label(results: StudyResults, run: pd.Series) -> str:
    """"epochs=14 (paper: 300) seed=0": the ledger's label with what ran; as the ledger has it for
    an attempt of an earlier plan, whose setting this plan may not have."""
    if run["setting"] not in results.points:
        return run["label"]
    named = " ".join(f"{a['name']}={labels.value(results, run['setting'], a['name'])}" for a in results.axes)
    return f"{named} seed={run['seed']}"


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
            Paragraph([f"Built {_now()}. One row per study: its best setting here (never a collapsed one, with the "
                       "settings its seeds cannot tell from it) and in the paper, how many of its rows agree with the "
                       "paper (direction or collapse, once the seeds resolve it; pending rows and rows without a "
                       "paper number are not judged), what collapsed, and what it cost."]),
            *_code_version(frame),
            Table(header, cells),
            Paragraph(["Also as ", *_links(files, folder), ". Each study's own report has the details."])]


def _code_version(frame: pd.DataFrame) -> list[Paragraph]:
    """The commit the studies' runs were made at, named once if they share it."""
    built = frame[frame["commit"].astype(object).fillna("") != ""]  # all-NaN when no study was built
    commits = list(dict.fromkeys(built["commit"]))
    if not commits:
        return []
    if len(commits) == 1:
        return [Paragraph([f"Code: every study here ran at commit {commits[0]}."])]
    return [Paragraph(["Code: the studies ran at different commits: "
                       + "; ".join(f"{r['study']} at {r['commit']}" for _, r in built.iterrows()) + "."])]


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
