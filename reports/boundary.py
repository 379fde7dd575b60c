"""The Boundary section of a boundary study's report: where its setting turns runs from healthy to
collapsed, the bracket with its midpoint as the estimate, every probe in the order it was
launched with the numbers its verdict rests on, and why the search stopped.

The search is worked out from the report's runs as the engine works it out from the ledger
(``studies.boundary``), on the page's collapse verdicts: the runs' own, unless the report is built
with another rule (``--collapse-kl``), and then the section says the bracket is that rule's, not
the one the search followed. The declaration is the one ``study.json`` recorded at launch, so a
results folder moved to another machine, or whose study file was edited or deleted since, reports
the search that ran; a ``study.json`` written before launches recorded it is read with the study
file it names, and gets no section if that file is gone or no longer declares this boundary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.collapse import CollapseRule
from reports import fmt, plots
from reports.document import Block, Figure, Heading, Paragraph, Table
from reports.load import StudyResults
from reports.plots import boundary as boundary_plot
from studies import boundary as search_engine
from studies import spec
from studies.axes import Boundary
from studies.boundary import State


@dataclass(frozen=True)
class Search:
    boundary: Boundary
    state: State
    probes: pd.DataFrame  # one row per probe value, in the order launched (see ``search``)
    runs: pd.DataFrame  # the latest attempt of each probe's planned runs: value, seed, state, collapse, share, kl
    own_verdicts: bool  # every finished run's verdict is its own, as the search used it


def declared(results: StudyResults) -> Boundary | None:
    """The ``[boundary]`` the results were launched with, if it searches the results' one axis:
    as ``study.json`` recorded it, else from the study file it names."""
    plan = results.plan
    try:
        if "boundary" not in plan:  # written before launches recorded the search
            found = spec.load(str(plan.get("file", ""))).boundary
        else:
            found = Boundary(**plan["boundary"]) if plan["boundary"] is not None else None
    except (TypeError, spec.SpecError):  # TypeError: a record of other fields than this version's
        return None
    names = [a["name"] for a in results.axes]
    return found if found is not None and names == [found.name] else None


def search(results: StudyResults) -> Search | None:
    """The search's state and its probes, or None for a study that searches no boundary.

    ``probes``: ``value``, ``label``, ``order`` (1 for the first launched), ``verdict``
    (``studies.boundary``'s), ``runs`` ("1/1 done"), ``modes`` (the finished runs' collapse
    verdicts), ``knn_top1``, ``share`` (final h(P_t) / ln K) and ``kl``, means over the finished
    runs."""
    boundary = declared(results)
    if boundary is None:
        return None
    name = boundary.name
    latest = results.latest().set_index("run_key")
    rows = []
    for run in results.plan["runs"]:
        attempt = latest.loc[run["key"]] if run["key"] in latest.index else None
        done = attempt is not None and attempt["state"] == "done"
        rows.append({"value": float(run["axes"][name]), "label": run["axes"][name], "seed": run["seed"],
                     "state": "missing" if attempt is None else attempt["state"],
                     "collapse": attempt["collapse"] if done else None,
                     "knn_top1": attempt["knn_top1"] if done else math.nan,
                     "share": attempt["target_entropy"] / attempt["ln_k"] if done else math.nan,
                     "kl": attempt["kl"] if done else math.nan})
    runs = pd.DataFrame(rows, columns=["value", "label", "seed", "state", "collapse", "knn_top1", "share", "kl"])
    verdicts = search_engine.verdicts(runs[["value", "state", "collapse"]].itertuples(index=False, name=None))
    launched = results.runs[results.runs["planned"]].groupby(f"axis.{name}")["trial"].min()
    probes = runs.groupby(["value", "label"], as_index=False).agg(
        done=("state", lambda s: int((s == "done").sum())), planned=("state", "size"),
        modes=("collapse", lambda m: ", ".join(sorted(set(m.dropna())))),
        knn_top1=("knn_top1", "mean"), share=("share", "mean"), kl=("kl", "mean"))
    probes["verdict"] = probes["value"].map(verdicts)
    probes["runs"] = [f"{d}/{p} done" for d, p in zip(probes["done"], probes["planned"])]
    probes["first_trial"] = probes["label"].map(launched)
    probes = probes.sort_values(["first_trial", "value"], na_position="last").reset_index(drop=True)
    probes.insert(0, "order", range(1, len(probes) + 1))
    finished = results.runs[results.runs["planned"] & results.runs["latest"] & (results.runs["state"] == "done")]
    return Search(boundary, search_engine.state(boundary, verdicts), probes.drop(columns=["first_trial"]), runs,
                  bool(finished["collapse_recorded"].all()))


def section(found: Search | None, rule: CollapseRule, folder: Path, portable: bool = False) -> list[Block]:
    """The section's blocks, its plot written into ``folder/plots``; nothing without a search.
    ``rule``: the one the page's verdicts were read with."""
    if found is None:
        return []
    boundary, now = found.boundary, found.state
    with plots.style():
        paths = plots.save(boundary_plot.boundary_figure(found, rule), folder / "plots", "boundary",
                           ("png",) if portable else ("png", "svg"))
    return [
        Heading("Boundary"),
        Paragraph([answer(found)]),
        Paragraph([f"Searched: {search_engine.describe(boundary)}. "
                   + (f"Stopped: {now.why}." if now.stop else f"Not finished: {now.why}.")
                   + (f" The verdict flips {now.flips} times along the probes: it is not monotone in "
                      f"{boundary.name} here, and the bracket is the flip nearest the healthy end." if now.flips > 1
                      else "")
                   + ("" if found.own_verdicts else " The verdicts here are this report's collapse rule's, not the "
                      "runs' own that the search followed, so its bracket may differ from theirs.")]),
        Table(["#", boundary.name, "verdict", "runs", "collapse", "k-NN top-1 (%)", "h(P_t) / ln K", "KL (nats)",
               ""],
              [[str(p["order"]), p["label"], p["verdict"], p["runs"], p["modes"] or fmt.DASH, fmt.number(p["knn_top1"]),
                fmt.number(p["share"], 3), fmt.number(p["kl"], 3), _end(found, p["value"])]
               for _, p in found.probes.iterrows()]),
        Figure(paths["png"], "The boundary search's probes", boundary_plot.caption(found), paths.get("svg")),
    ]


def answer(found: Search) -> str:
    """The finding in one sentence: the bracket, its midpoint and width; or why there is none."""
    boundary, now = found.boundary, found.state
    if now.bracket is None:
        return f"No bracket: {now.why}."
    a, b = now.bracket
    healthy_low = found.probes.set_index("value").loc[a, "verdict"] == search_engine.HEALTHY
    healthy, collapsed = (a, b) if healthy_low else (b, a)
    width = boundary.width(a, b)
    return (f"{boundary.name} turns runs from healthy at {_label(found, healthy)} to collapsed at "
            f"{_label(found, collapsed)}: the boundary is estimated at {boundary.midpoint(a, b):.4g}, the "
            f"bracket's midpoint on its {boundary.scale} scale, within ± {boundary.units(width / 2)} "
            f"(bracket width {boundary.units(width)}, tolerance {boundary.units(boundary.tolerance)}).")


def _label(found: Search, value: float) -> str:
    return found.probes.set_index("value").loc[value, "label"]


def _end(found: Search, value: float) -> str:
    bracket = found.state.bracket
    return "bracket end" if bracket and value in bracket else ""
