"""What was run: the facts a reader needs before trusting a table (the report's first section).

Profile, data, seeds, the settings every run shares that differ from the profile (the study's
``set`` and any ``--set`` given at launch, read from the runs' recorded configs rather than
assumed), code version, software, devices, hosts, dates and cost. Several values where runs
disagree (two git commits, two torch versions) are all listed: mixing them is worth seeing.
"""
from __future__ import annotations

import json
from typing import Any

import pandas as pd

from core.config import ConfigError
from core.profiles import profile_config
from reports.fmt import UNITS
from reports.load import StudyResults
from reports.tables import cost_unit, totals
from reports.verdict import paper_scale


def facts(results: StudyResults) -> list[tuple[str, str]]:
    """(field, value) pairs in reading order; fields without any record are left out."""
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
        found.append(("data", f"{first.get('data.name')} at {first.get('data.path')}"))
        found.append(("model", f"{first.get('backbone.name')} (patch {_values(configs, 'backbone.patch_size')}, "
                               f"width {first.get('backbone.embed_dim')}, depth {first.get('backbone.depth')}), "
                               f"head K = {_values(configs, 'head.out_dim')}, {_values(configs, 'epochs')} epochs, "
                               f"batch {_values(configs, 'batch_size')}, {first.get('precision')}"))
        changed = _shared_changes(configs, profile)
        if changed is not None:
            found.append((f"every run changes from {profile}", changed or "nothing"))
    found += [(name, _distinct(runs[column])) for name, column in
              (("code (git commit)", "git_commit"), ("software", "software"), ("devices", "devices"),
               ("hosts", "host")) if runs[column].notna().any()]
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
    found.append(("results", f"{results.results_dir}"))
    return found


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
