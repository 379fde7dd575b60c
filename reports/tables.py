"""The study's table (one row per setting) and the combined table (one row per study), as data.

``summary`` and ``combined`` compute everything as numbers (written as CSV); ``display`` and
``combined_display`` turn them into the strings a page shows, ``latex`` and ``tabular`` into a
booktabs table for a paper.
Statistics use the *counted* runs only: the latest attempt of each planned run, finished, with a
k-NN result. Failed and superseded attempts (and attempts of an older plan) are left out of the
statistics but every attempt's cost is in the cost columns, because it was spent.
The student's k-NN gets the teacher's statistics, over the counted runs that measured it (runs
recorded before the trainer measured it have none); tables for reading leave its columns out
while no run of the study has it. Settings are named by what ran (``reports.labels``), and the
references (``reports.references``) go with the table as its notes.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Collection, Sequence

import pandas as pd

from core import collapse as collapse_marks
from reports import labels
from reports.fmt import DASH, UNITS, commit, hours, interval, joined, number, tex
from reports.load import SAVED, StudyResults
from reports.noise import SEED_NOISE
from reports.references import References, notes
from reports.stats import Summary, summarize
from reports.verdict import AGREES, COLLAPSED_AS_PAPER, JUDGED, NOT_RESOLVED, Row, badge, best_here, \
    expected_collapse, judge, paper_scale
from studies.spec import value_label


NOT_RUN, NOT_BUILT = "not run", "not built"  # the combined table's "runs" of a study without a report
STUDENT_TOP1, STUDENT_CI, STUDENT_BEST = "student top-1 (%)", "student 95 % CI", "student k-NN there (± 95 % CI)"
LINEAR_TOP1, STUDENT_LINEAR = "linear top-1 (%)", "student linear (%)"  # the linear probes, where recorded


def cost_unit(results: StudyResults) -> str:
    """"gpu_hours" if the study used GPUs, else "cpu_hours": the column its tables show."""
    return "gpu_hours" if results.runs["gpu_hours"].fillna(0).sum() > 0 else "cpu_hours"


def summary(results: StudyResults, references: References | None = None) -> pd.DataFrame:
    """One row per setting in declared order; see the module docstring for which runs count."""
    runs = results.runs
    planned = runs[runs["planned"]]
    counted = planned[planned["counted"]]
    names = labels.labels(results)
    found = references.by_setting if references else {}
    records, verdict_rows = [], []
    for setting in results.settings:
        mine = counted[counted["setting"] == setting]
        attempts = planned[planned["setting"] == setting]
        top1 = summarize(mine["knn_top1"])
        student = summarize(mine["student_knn_top1"])
        modes = Counter(m for m in mine["collapse"] if collapse_marks.is_collapsed(m))
        collapsed = sum(modes.values())
        mode = modes.most_common(1)[0][0] if modes else collapse_marks.NONE
        paper = results.paper.get(setting)
        stops = mine["stopped_epoch"].dropna().astype(int).tolist()  # collapsed and stopped early
        config = labels.config_of(results, setting)
        point = results.points[setting]
        row = Row(names[setting], top1, paper, collapsed, mode, expected_collapse(paper, config), _mean(mine["kl"]),
                  group=tuple(point[a["name"]] for a in results.axes if not a["paper"]),
                  stopped=_stopped(stops, mine["epochs"]))
        verdict_rows.append(row)
        reference = found.get(setting)
        records.append({
            "setting": setting, "label": names[setting], "used": _used(results, config, point), "n": top1.n,
            "planned": results.planned(setting),
            **_accuracy("", top1, mine["knn_top5"]),
            "student_n": student.n, **_accuracy("student_", student, mine["student_knn_top5"]),
            "paper": math.nan if paper is None else paper,
            "paper_diff": top1.mean - paper if paper is not None and paper_scale(results.plan["profile"]) else math.nan,
            "random_init_top1": reference.top1("random_init") if reference else math.nan,
            "raw_pixels_top1": reference.top1("raw_pixels") if reference else math.nan,
            "linear_top1_mean": _mean(mine["linear_top1"]),
            "student_linear_top1_mean": _mean(mine["student_linear_top1"]),
            "entropy_mean": _mean(mine["target_entropy"]), "student_entropy_mean": _mean(mine["student_entropy"]),
            "kl_mean": row.kl, "ln_k": _mean(mine["ln_k"]),
            "collapsed_runs": collapsed, "stopped_runs": len(stops),
            "collapse": _collapse_text(mode, collapsed, top1.n, len(stops), row.stopped),
            "expected_collapse": row.expected, "attempts": len(attempts),
            "failed_attempts": int((attempts["state"] == "failed").sum()),
            **{k: attempts[k].sum(min_count=1) for k in ("gpu_hours", "cpu_hours", *SAVED)},
        })
    frame = pd.DataFrame(records)
    noise = SEED_NOISE.get(results.plan["profile"])
    verdicts = judge(verdict_rows, noise)
    best, ties = best_here(verdict_rows, noise)
    return frame.assign(verdict_status=[v.status for v in verdicts], verdict=[v.text for v in verdicts],
                        verdict_seeds=[v.seeds for v in verdicts],
                        best_here=[r is best for r in verdict_rows],
                        tied_with_best=[any(r is t for t in ties) for r in verdict_rows])


def table_notes(table: pd.DataFrame, references: References | None) -> list[str]:
    """What the table's numbers are read against, in sentences: the references, and the best
    setting here with the settings its seeds cannot tell from it."""
    names = dict(zip(table["setting"], table["label"]))
    sentences = notes(references, names) if references else []
    best = table[table["best_here"]]
    if len(best):
        ties = list(table.loc[table["tied_with_best"], "label"])
        sentences.append(f"Best here: {best['label'].iloc[0]}" + (f", level within noise with {joined(ties)}" if ties
                                                                   else ", resolved above every other setting")
                         + " (settings with a collapsed seed are not ranked).")
    return sentences


def totals(results: StudyResults) -> dict[str, float]:
    """Cost of every attempt in the ledger (planned or not, failed or not), how many attempts
    have no recorded cost (killed before sacred could close them, or still running), and what the
    early stops of collapsed runs saved."""
    runs = results.runs
    return {"attempts": len(runs), **{k: runs[k].sum() for k in ("gpu_hours", "cpu_hours", *SAVED)},
            "wall_hours": runs["wall_seconds"].sum() / 3600, "unrecorded": int((~runs["cost_recorded"]).sum())}


def display(results: StudyResults, table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and string rows for reading (Markdown, HTML): columns without content are dropped
    (no "runs used" when the labels are the values, no paper columns without paper numbers)."""
    unit = cost_unit(results)
    axis = " × ".join(a["name"] for a in results.axes)
    columns: list[tuple[str, Any]] = [
        (axis, lambda r: r["label"]),
        ("n", lambda r: f"{r['n']}/{r['planned']}"),
        ("k-NN top-1 (%)", lambda r: number(r["top1_mean"])),
        ("std", lambda r: number(r["top1_std"])),
        ("95 % CI", lambda r: interval(r["top1_ci_low"], r["top1_ci_high"])),
        ("top-5 (%)", lambda r: number(r["top5_mean"])),
        (STUDENT_TOP1, lambda r: number(r["student_top1_mean"])
         + (f" ({r['student_n']} of {r['n']})" if 0 < r["student_n"] < r["n"] else "")),
        (STUDENT_CI, lambda r: interval(r["student_top1_ci_low"], r["student_top1_ci_high"])),
        (LINEAR_TOP1, lambda r: number(r["linear_top1_mean"])),
        (STUDENT_LINEAR, lambda r: number(r["student_linear_top1_mean"])),
        ("paper", lambda r: number(r["paper"], 1)),
        ("Δ paper", lambda r: number(r["paper_diff"], signed=True)),
        ("h(P_t)", lambda r: number(r["entropy_mean"], 3)),
        ("h(P_s)", lambda r: number(r["student_entropy_mean"], 3)),
        ("KL", lambda r: number(r["kl_mean"], 3)),
        ("collapse", lambda r: r["collapse"]),
        (UNITS[unit], lambda r: hours(r[unit])),
        (saved := f"{UNITS[unit]} saved", lambda r: hours(r[f"saved_{unit}"])),
        ("verdict", lambda r: badge(r["verdict_status"], r["verdict_seeds"])),
    ]
    rows = [[str(cell(r)) for _, cell in columns] for _, r in table.iterrows()]
    header = [name for name, _ in columns]
    total = totals(results)
    rows.append([f"all ({total['attempts']} attempts)"] + [""] * (len(header) - 4)
                + [hours(total[unit]), hours(total[f"saved_{unit}"]) if total[f"saved_{unit}"] else "", ""])
    return _drop_empty(header, rows, ("paper", "Δ paper", STUDENT_TOP1, STUDENT_CI, LINEAR_TOP1, STUDENT_LINEAR,
                                      "h(P_s)", saved))


def latex(results: StudyResults, table: pd.DataFrame, sentences: Sequence[str] = ()) -> str:
    """A booktabs table for a paper: setting, n, top-1 ± std, 95 % CI, top-5, the student's top-1
    ± std and 95 % CI (where measured), paper, collapse; ``sentences`` end its caption."""
    show_paper = bool(table["paper"].notna().any())
    show_diff = bool(table["paper_diff"].notna().any())
    show_student = bool(table["student_n"].gt(0).any())
    axis = " × ".join(a["name"] for a in results.axes)
    header = [tex(axis), "$n$", r"top-1 (\%)", r"95\,\% CI", r"top-5 (\%)"]
    header += [r"student top-1 (\%)", r"student 95\,\% CI"] * show_student
    header += ["paper"] * show_paper + [r"$\Delta$"] * show_diff + ["collapse"]
    rows = []
    for _, r in table.iterrows():
        cells = [tex(r["label"]), str(r["n"]), *_mean_and_interval(r, ""), tex(number(r["top5_mean"]))]
        cells += _mean_and_interval(r, "student_") if show_student else []
        cells += [tex(number(r["paper"], 1))] * show_paper + [tex(number(r["paper_diff"], signed=True))] * show_diff
        rows.append(cells + [tex(r["collapse"])])
    caption = " ".join([f"{results.name}: k-NN accuracy per {axis} (profile {results.plan['profile']}; mean over "
                        f"seeds, 95 % t-interval). Paper: {results.plan.get('reference') or 'none'}.", *sentences])
    return tabular(header, rows, "l" + "r" * (len(header) - 2) + "l", tex(caption), results.name)


def tabular(header: Sequence[str], rows: Sequence[Sequence[str]], align: str, caption: str, label: str) -> str:
    """A booktabs ``table`` of already escaped cells, ``align`` one letter per column."""
    label = "".join(c if c.isalnum() else "-" for c in label)
    return "\n".join([r"\begin{table}[t]", r"\centering", r"\small",
                      rf"\begin{{tabular}}{{{align}}}", r"\toprule",
                      " & ".join(header) + r" \\", r"\midrule", *(" & ".join(row) + r" \\" for row in rows),
                      r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", rf"\label{{tab:{label}}}",
                      r"\end{table}", ""])


def combined(studies: Sequence[tuple[str, StudyResults | None, pd.DataFrame | None]],
             skipped: Collection[str] = ()) -> pd.DataFrame:
    """One headline row per study, like the paper's appendix: its best setting here (never a
    collapsed one, with those its seeds cannot tell from it) and in the paper (with the student's
    k-NN there), how many rows agree with the paper and how many are not resolved, what collapsed,
    the code commit, what it cost. A study without results (``None``) gets a "not run" row, or
    "not built" if it is among ``skipped`` (it has results, but no report could be built from them)."""
    records = []
    for name, results, table in studies:
        if results is None or table is None:
            records.append({"study": name, "profile": None, "runs": NOT_BUILT if name in skipped else NOT_RUN})
            continue
        progress = results.progress()
        best = table[table["best_here"]].iloc[0] if table["best_here"].any() else None
        papered = table[table["paper"].notna() & (table["expected_collapse"] == "none")]
        paper_best = papered.loc[papered["paper"].idxmax()] if len(papered) else None
        status = table["verdict_status"]
        unit, total = cost_unit(results), totals(results)
        records.append({
            "study": name, "profile": results.plan["profile"], "runs": f"{progress['done']}/{progress['total']}",
            "best_here": None if best is None else best["label"],
            "best_here_ties": ", ".join(table.loc[table["tied_with_best"], "label"]),
            "best_here_top1": math.nan if best is None else best["top1_mean"],
            "best_here_ci": math.nan if best is None else (best["top1_ci_high"] - best["top1_ci_low"]) / 2,
            "best_here_student_top1": math.nan if best is None else best["student_top1_mean"],
            "best_here_student_ci": math.nan if best is None else (
                best["student_top1_ci_high"] - best["student_top1_ci_low"]) / 2,
            "paper_best": None if paper_best is None else paper_best["setting"],
            "paper_best_top1": math.nan if paper_best is None else paper_best["paper"],
            "agree": int(status.isin([AGREES, COLLAPSED_AS_PAPER]).sum()), "judged": int(status.isin(JUDGED).sum()),
            "not_resolved": int((status == NOT_RESOLVED).sum()),
            "collapsed_here": ", ".join(table.loc[table["collapse"] != "", "label"]),
            "collapsed_in_paper": ", ".join(table.loc[table["expected_collapse"] != "none", "label"]),
            "commit": ", ".join(sorted({commit(c) for c in results.runs["git_commit"].dropna()})),
            "cost": total[unit], "saved": total[f"saved_{unit}"], "cost_unit": unit,
        })
    columns = ["study", "profile", "runs", "best_here", "best_here_ties", "best_here_top1", "best_here_ci",
               "best_here_student_top1", "best_here_student_ci", "paper_best", "paper_best_top1", "agree", "judged",
               "not_resolved", "collapsed_here", "collapsed_in_paper", "commit", "cost", "saved", "cost_unit"]
    counts = dict.fromkeys(("agree", "judged", "not_resolved"), "Int64")
    return pd.DataFrame(records, columns=columns).astype(counts)


def combined_display(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and string rows of the combined table; the student's column only where a study has it."""
    header = ["study", "profile", "runs done", "best here (k-NN top-1 %, ± 95 % CI)", STUDENT_BEST, "paper's best",
              "agrees with the paper", "collapsed here", "collapses in the paper", "cost"]
    rows = []
    for _, r in frame.iterrows():
        if r["runs"] in (NOT_RUN, NOT_BUILT):
            rows.append([r["study"], DASH, r["runs"]] + [""] * (len(header) - 3))
            continue
        best = DASH if pd.isna(r["best_here"]) else (
            f"{r['best_here']}: {_plus_minus(r['best_here_top1'], r['best_here_ci'])}"
            + (f" (level with {r['best_here_ties']})" if r["best_here_ties"] else ""))
        paper = DASH if pd.isna(r["paper_best"]) else f"{r['paper_best']}: {number(r['paper_best_top1'], 1)}"
        agree = [f"{int(r['agree'])} of {int(r['judged'])} rows"] if r["judged"] else []
        agree += [f"{int(r['not_resolved'])} not resolved"] if r["not_resolved"] else []
        rows.append([r["study"], r["profile"], r["runs"], best,
                     _plus_minus(r["best_here_student_top1"], r["best_here_student_ci"]), paper,
                     "; ".join(agree) or DASH, r["collapsed_here"] or DASH, r["collapsed_in_paper"] or DASH,
                     f"{hours(r['cost'])} {UNITS[r['cost_unit']]}"
                     + (f" ({hours(r['saved'])} saved by early stops)" if r["saved"] > 0 else "")])
    return _drop_empty(header, rows, (STUDENT_BEST,))


# -- helpers --------------------------------------------------------------------------------------
def _accuracy(prefix: str, top1: Summary, top5: pd.Series) -> dict[str, float]:
    """One network's k-NN columns, named alike for the teacher (no prefix) and the student
    ("student_"), so that every table reads both the same way."""
    return {f"{prefix}top1_mean": top1.mean, f"{prefix}top1_std": top1.std, f"{prefix}top1_ci_low": top1.ci_low,
            f"{prefix}top1_ci_high": top1.ci_high, f"{prefix}top5_mean": summarize(top5).mean}


def _mean_and_interval(row: pd.Series, prefix: str) -> list[str]:
    """LaTeX cells "mean ± std" and "[low, high]" of one network's top-1."""
    return [tex(_plus_minus(row[f"{prefix}top1_mean"], row[f"{prefix}top1_std"])),
            tex(interval(row[f"{prefix}top1_ci_low"], row[f"{prefix}top1_ci_high"]))]


def _plus_minus(value: float, spread: float) -> str:
    """"72.00 ± 2.00"; the value alone where there is no spread (one seed), a dash where no value."""
    return number(value) + (f" ± {number(spread)}" if math.isfinite(value) and math.isfinite(spread) else "")


def _drop_empty(header: list[str], rows: list[list[str]], optional: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Leave out the ``optional`` columns that have nothing in any row (dashes only)."""
    keep = [i for i, name in enumerate(header) if name not in optional or any(row[i] not in ("", DASH) for row in rows)]
    return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]


def _used(results: StudyResults, config: dict[str, Any], point: dict[str, str]) -> str:
    """The config values behind a setting where they differ from its label (a profile's mapping:
    the label "100" of the epochs axis runs 2 epochs on profile tiny)."""
    used = [f"{axis['key']}={value_label(config[axis['key']])}" for axis in results.axes
            if axis["key"] in config and value_label(config[axis["key"]]) != point[axis["name"]]]
    return ", ".join(used)


def _stopped(stops: list[int], epochs: pd.Series) -> str:
    """"stopped at epoch 2 of 6" (or "epochs 2, 3"), "" where no run stopped early."""
    return collapse_marks.stopped_at(stops, int(epochs.max())) if stops else ""


def _collapse_text(mode: str, collapsed: int, n: int, stopped_runs: int, stopped: str) -> str:
    """"collapsed (uniform)", or "stopped at epoch 2 of 6: collapsed (uniform) in 2 of 3; 1 trained to
    the end": where the collapsed seeds stopped early, and how many of them trained on regardless."""
    text = collapse_marks.mark(mode)
    if not text:
        return text
    text = f"{stopped}: {text}" if stopped else text
    text += f" in {collapsed} of {n}" if collapsed < n else ""
    return text + (f"; {collapsed - stopped_runs} trained to the end" if 0 < stopped_runs < collapsed else "")


def _mean(values: pd.Series) -> float:
    finite = values.dropna()
    return float(finite.mean()) if len(finite) else math.nan
