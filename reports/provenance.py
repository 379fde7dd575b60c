"""What was run: the facts a reader needs before trusting a table (the report's first section).

Profile, data, seeds, the settings every run shares that differ from the profile (the study's
``set`` and any ``--set`` given at launch, read from the runs' recorded configs rather than
assumed), code version, software, devices, hosts, dates and cost. Several values where runs
disagree (two git commits, two torch versions) are all listed: mixing them is worth seeing.

A published copy (``portable``) is read on other machines and kept in git, so it names no machine:
no host names, no results folder, and paths inside the repository relative to it (``scrub`` does
the same to free text such as a run's error).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import ConfigError
from core.profiles import profile_config
from reports.fmt import UNITS, commit
from reports.load import StudyResults
from reports.tables import cost_unit, totals
from reports.verdict import paper_scale

REPO = Path(__file__).resolve().parent.parent
_PATH = re.compile(r"(?<![\w.~>-])/(?:[\w.+~-]+/)*[\w.+~-]+")  # an absolute path in free text


def facts(results: StudyResults, portable: bool = False) -> list[tuple[str, str]]:
    """(field, value) pairs in reading order; fields without any record are left out, and the
    machine's own (hosts, the results folder) from a ``portable`` copy."""
    plan, runs = results.plan, results.runs
    configs = [results.configs[run["key"]] for run in results.plan["runs"] if run["key"] in results.configs]
    profile = plan["profile"]
    scale = "the paper's scale" if paper_scale(profile) else "not the paper's scale: compare directions, not numbers"
    seeds = sorted({run["seed"] for run in plan["runs"]})
    found = [("study", f"{results.name}: {plan.get('description', '')}"),
             ("paper", plan.get("reference") or "—"),
             ("study file", plan.get("file", "—")),
             ("profile", f"{profile} ({scale})"),
             ("grid", "; ".join(f"{a['name']}" + (f" ({a['key']})" if a["key"] else "") + ": "
                                + ", ".join(a["labels"]) for a in results.axes)),
             ("seeds", f"{len(seeds)} per setting: {', '.join(map(str, seeds))}"),
             ("runs", f"{len(plan['runs'])} planned, {len(runs)} attempts in the ledger, "
                      f"cluster {plan.get('cluster')}")]
    if configs:
        first = configs[0]
        found.append(("data", _data(first, profile, portable)))
        found.append(("model", f"{first.get('backbone.name')} (patch {_values(configs, 'backbone.patch_size')}, "
                               f"width {first.get('backbone.embed_dim')}, depth {first.get('backbone.depth')}), "
                               f"head K = {_values(configs, 'head.out_dim')}, {_values(configs, 'epochs')} epochs, "
                               f"batch {_values(configs, 'batch_size')}, {first.get('precision')}"))
        changed = _shared_changes(configs, profile)
        if changed is not None:
            found.append((f"every run changes from {profile}", changed or "nothing"))
    if runs["git_commit"].notna().any():
        found.append(("code (git commit)", _distinct(runs["git_commit"].dropna().map(commit))))
    found += [(name, _distinct(runs[column])) for name, column in
              (("software", "software"), ("devices", "devices"), ("hosts", "host"))
              if runs[column].notna().any() and not (portable and column == "host")]
    if runs["git_dirty"].fillna(False).astype(bool).any():
        found.append(("uncommitted changes", "yes: some runs ran with a dirty working tree (sacred stored the "
                                             "sources under sacred/_sources)"))
    if runs["start"].notna().any():
        found.append(("dates (UTC)", f"{_stamp(runs['start'].min())} to {_stamp(runs['stop'].max())}"))
    total = totals(results)
    unit = cost_unit(results)
    found.append(("cost", f"{total[unit]:.3g} {UNITS[unit]} over {total['attempts']} attempts "
                          f"({total['wall_hours']:.3g} wall-clock hours)"
                          + (f"; {total['unrecorded']} attempt(s) without a recorded cost (killed, or still running)"
                             if total["unrecorded"] else "")))
    if portable:
        return [(name, scrub(value, results.results_dir)) for name, value in found]
    return found + [("results", f"{results.results_dir}")]


def scrub(text: str, results_dir: Path) -> str:
    """Free text without machine paths: the results folder as ``<results>``, the repository's
    paths relative to it, any other absolute path as ``…/<its last part>``."""
    text = text.replace(str(results_dir), "<results>").replace(f"{REPO}/", "")
    return _PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def _data(config: dict[str, Any], profile: str, portable: bool) -> str:
    """"fashion_mnist at /path"; a portable copy says only whether the path is the profile's own."""
    name, path = config.get("data.name"), config.get("data.path")
    if not portable:
        return f"{name} at {path}"
    try:
        own = profile_config(profile).data.path == path
    except ConfigError:
        own = False
    return f"{name}, from {'the data.path of profile ' + profile if own else 'a data.path given at launch'}"


def _shared_changes(configs: list[dict[str, Any]], profile: str) -> str | None:
    """"key old -> new" for each setting all runs share that differs from the profile; None if
    the profile is unknown to this version of core."""
    try:
        base = profile_config(profile).flat()  # JSON-normalised, like the recorded config.json
    except ConfigError:
        return None
    changes = []
    for key in sorted(configs[0]):
        values = {json.dumps(c.get(key)) for c in configs}
        if key != "seed" and len(values) == 1 and values != {json.dumps(base.get(key))}:
            changes.append(f"{key} {base.get(key)!r} -> {configs[0][key]!r}")
    return ", ".join(changes)


def _values(configs: list[dict[str, Any]], key: str) -> str:
    return "/".join(str(v) for v in sorted({c.get(key) for c in configs}, key=str))


def _distinct(column: pd.Series) -> str:
    values = column.dropna().astype(str).unique()
    return "; ".join(values) if len(values) <= 3 else f"{'; '.join(values[:3])} and {len(values) - 3} more"


def _stamp(value: Any) -> str:
    return "(still running)" if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")
