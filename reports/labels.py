"""What each setting ran, as tables and plots name it, and how a grid is laid out in panels.

A study declares an axis in the paper's values (epochs 100 / 300 / 800) and may map them per
profile to what that profile can afford (5 / 14 / 37 on tiny): ``study.json`` keeps the declared
labels, the runs' recorded configs what ran. A reader must see what ran, with the paper's value
beside it where the two differ ("14 (paper: 300)"), or the plot says 300 epochs of a 14-epoch run.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from reports.load import StudyResults, setting_label
from studies.spec import value_label


def config_of(results: StudyResults, setting: str) -> dict[str, Any]:
    """The flat config one of the setting's attempts recorded (empty if none started)."""
    keys = results.runs.loc[results.runs["setting"] == setting, "run_key"]
    return next((results.configs[k] for k in keys if k in results.configs), {})


def ran(results: StudyResults, setting: str) -> dict[str, str]:
    """Axis name -> the value label its runs used: the recorded config value of the axis's key,
    the declared label where the axis has no key or no run has started."""
    config, point = config_of(results, setting), results.points[setting]
    return {a["name"]: value_label(config[a["key"]]) if a["key"] in config else point[a["name"]]
            for a in results.axes}


def value(results: StudyResults, setting: str, axis: str) -> str:
    """One axis's value as the reader should see it: "4 (paper: 5)", or "8" where they agree."""
    used, declared = ran(results, setting)[axis], results.points[setting][axis]
    source = "paper" if results.plan.get("reference") else "declared"
    return used if used == declared else f"{used} ({source}: {declared})"


def label(results: StudyResults, setting: str) -> str:
    """The setting's name with what ran: "4 (paper: 5)", or "epochs=14 (paper: 300), m=0.9"."""
    return setting_label(results.axes, {a["name"]: value(results, setting, a["name"]) for a in results.axes})


def labels(results: StudyResults) -> dict[str, str]:
    """Setting -> its ``label``, in declared order."""
    return {setting: label(results, setting) for setting in results.settings}


def numeric(text: str) -> bool:
    """Whether a value label is a number: only numbers stand on a line that may join them."""
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Facet:
    """One panel of a grid: the settings along the x axis at one point of the other axes."""

    title: str  # "m=0.9" (empty on a one-axis study)
    settings: list[str]  # in the x axis's declared order
    ticks: list[str]  # the x axis's value of each, as ``value`` writes it


def x_axis(results: StudyResults) -> dict[str, Any]:
    """The axis along which the paper's numbers vary (else the first): the one on the x axis."""
    return next((a for a in results.axes if a["paper"]), results.axes[0])


def facets(results: StudyResults) -> list[Facet]:
    """The x axis in one panel per point of the other axes, so that a second axis gets its own
    panels instead of being strung onto the first axis's line."""
    x = x_axis(results)
    others = [a for a in results.axes if a is not x]
    panels = []
    for combo in itertools.product(*(a["labels"] for a in others)):
        fixed = dict(zip((a["name"] for a in others), combo))
        settings = [setting_label(results.axes, {**fixed, x["name"]: v}) for v in x["labels"]]
        title = ", ".join(f"{name}={value(results, settings[0], name)}" for name in fixed)
        panels.append(Facet(title, settings, [value(results, s, x["name"]) for s in settings]))
    return panels
