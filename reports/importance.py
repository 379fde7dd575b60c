"""Which factor matters, in a study of two axes or more: each factor's mean metric per value, with
its interval, and optuna's PED-ANOVA importance of each factor.

Both are computed from the runs the tables count (the latest finished attempt of each planned
run), read from the report's frame rather than from the ledger's trials: the frame already leaves
out superseded attempts and runs of an earlier plan, and it reads ledgers written before trials
carried their axes as optuna params as well as those written after. PED-ANOVA is given them as a
throwaway in-memory optuna study, one trial per run, each axis a categorical param over its
declared values.

A factor's mean at one of its values is over every counted run at that value, whatever the other
axes and the seed: a main effect. Its interval (``reports.stats``) treats those runs as a sample,
so it is wide when the other factors or the seeds move the metric a lot. PED-ANOVA (Watanabe et
al., IJCAI 2023) asks instead how much more often each factor's values are found among the
study's best runs than among all of them; its importances are shares summing to 1.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.trial import create_trial

from reports import fmt, labels
from reports.load import StudyResults
from reports.stats import CONFIDENCE, summarize

# The share of the runs counted as "the best": optuna's default 0.1 picks the single best run in
# the studies of 4 to 20 runs these are, and one run cannot tell the factors apart.
TOP = 0.25
MIN_TOP = 2  # best runs needed for PED-ANOVA to say anything
FILE = "factors.csv"  # beside the report's page
# PED-ANOVA's divergence of two equal distributions comes out near 1e-32, not 0 (float rounding);
# a factor of a few runs that does shift the best ones scores 1e-3 or more. Below this it is 0.
NOISE_FLOOR = 1e-12


@dataclass(frozen=True)
class Factors:
    """``means``: one row per axis value (``factor_means``); ``summary``: one per factor
    (``summary``); ``sample``: which runs PED-ANOVA ranked, or why it was not computed."""

    metric: str
    means: pd.DataFrame
    summary: pd.DataFrame
    sample: str

    def frame(self) -> pd.DataFrame:
        """Both in one frame, for a CSV: each value's row with its factor's effect and share."""
        return self.means.merge(self.summary, on="factor", how="left")


def factors(results: StudyResults) -> Factors | None:
    """The section's numbers; None for a study of one axis, where the one factor is the table."""
    if len(results.axes) < 2:
        return None
    means = factor_means(results)
    shares, sample = ped_anova(results)
    return Factors(results.plan["metric"], means, summary(results, means, shares), sample)


def counted(results: StudyResults) -> pd.DataFrame:
    """The runs the tables count that have the study's metric."""
    runs = results.runs[results.runs["counted"]]
    return runs[np.isfinite(runs[results.plan["metric"]].astype(float))]  # a boolean Series also when empty


def factor_means(results: StudyResults) -> pd.DataFrame:
    """One row per axis value, axes in declared order: ``factor``, ``value`` (as the tables label
    it, what ran with the paper's value beside), ``n`` runs, ``mean``, ``std``, ``ci_low``,
    ``ci_high`` of the study's metric."""
    runs, metric = counted(results), results.plan["metric"]
    rows = []
    for axis in results.axes:
        name = axis["name"]
        for value in axis["labels"]:
            setting = next(s for s, point in results.points.items() if point[name] == value)
            s = summarize(runs.loc[runs[f"axis.{name}"] == value, metric])
            rows.append({"factor": name, "value": labels.value(results, setting, name), "n": s.n, "mean": s.mean,
                         "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high})
    return pd.DataFrame(rows, columns=["factor", "value", "n", "mean", "std", "ci_low", "ci_high"])


def ped_anova(results: StudyResults) -> tuple[dict[str, float], str]:
    """Axis name -> its PED-ANOVA share of the importance, in declared order; empty, with the
    reason, when the runs cannot rank the factors."""
    runs, metric = counted(results), results.plan["metric"]
    if runs[metric].nunique() < 2:
        return {}, f"not computed: no two finished runs differ in {metric} ({len(runs)} finished)"
    sign = 1 if results.plan["direction"] == "maximize" else -1
    best = sorted(sign * runs[metric], reverse=True)
    top = sum(v >= best[math.ceil(TOP * len(best)) - 1] for v in best)
    if top < MIN_TOP:
        return {}, (f"not computed: the best {TOP:.0%} of the {len(runs)} finished runs is {top} run; PED-ANOVA "
                    f"needs {MIN_TOP} or more, {math.ceil(MIN_TOP / TOP)} runs with distinct values")
    study = optuna.create_study(direction=results.plan["direction"])
    distributions = {a["name"]: CategoricalDistribution(a["labels"]) for a in results.axes}
    for _, run in runs.iterrows():
        study.add_trial(create_trial(params={a: run[f"axis.{a}"] for a in distributions},
                                     distributions=distributions, value=float(run[metric])))
    with warnings.catch_warnings():  # optuna's advice for small studies; the section states the sample
        warnings.simplefilter("ignore")
        found = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(target_quantile=TOP),
                                      normalize=False)  # optuna shares a total of 0 out equally
    found = {a: value if value > NOISE_FLOOR else 0.0 for a, value in found.items()}
    total, sample = sum(found.values()), f"the best {TOP:.0%} of the runs: {top} of {len(runs)}"
    if total == 0:
        return dict.fromkeys(distributions, 0.0), f"{sample}, where every factor's values are as frequent as among all"
    return {a: found[a] / total for a in distributions}, sample


def summary(results: StudyResults, means: pd.DataFrame, shares: dict[str, float]) -> pd.DataFrame:
    """One row per factor: ``effect``, the spread of its means (highest - lowest), and its
    PED-ANOVA ``share`` (NaN where not computed)."""
    spread = means.groupby("factor", sort=False)["mean"].agg(lambda m: m.max() - m.min())
    return pd.DataFrame({"factor": [a["name"] for a in results.axes],
                         "effect": [spread[a["name"]] for a in results.axes],
                         "share": [shares.get(a["name"], math.nan) for a in results.axes]})


def display(found: Factors) -> tuple[tuple[list[str], list[list[str]]], tuple[list[str], list[list[str]]]]:
    """The two tables as the page shows them: the means per value, then one row per factor."""
    means = (["factor", "value", "n", f"mean {found.metric}", f"{CONFIDENCE:.0%} interval"],
             [[r["factor"], r["value"], str(r["n"]), fmt.number(r["mean"]), fmt.interval(r["ci_low"], r["ci_high"])]
              for _, r in found.means.iterrows()])
    ranked = (["factor", "effect (highest - lowest mean)", "PED-ANOVA share"],
              [[r["factor"], fmt.number(r["effect"]), fmt.number(r["share"])] for _, r in found.summary.iterrows()])
    return means, ranked
