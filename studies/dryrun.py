"""What a launch would do, written out without doing it: ``--dry-run`` (the runs, what each
changes from the profile, the resources and the sbatch script exactly as submitted) and
``--print-config`` (every run's resolved config as TOML, in ``core.train --print-config``'s
writer, one table per run label: ``tomllib`` reads it back, and each table is a complete
``DINOConfig.from_dict``)."""
from __future__ import annotations

from collections import Counter
from typing import Any

import tomli_w

from core.profiles import profile_config
from studies import boundary, plan


def dry_run(ctx) -> str:
    """``ctx``: the invocation, a ``studies.run.Context``."""
    base = profile_config(ctx.profile)
    diffs = [plan.diff(run.config, base) for run in ctx.runs]
    common = {k: v for k, v in diffs[0].items() if all(d.get(k) == v for d in diffs)}
    study = ctx.study
    lines = [f"{study.name}: {study.description}",
             f"reference: {study.reference or '(none)'}",
             f"profile {ctx.profile}, metric {study.metric} ({study.direction}), cluster {ctx.cluster}",
             f"results: {ctx.results}  ledger: {ctx.storage}",
             "options: " + " | ".join(o.words() for o in ctx.options.selected),
             f"every run changes from profile {ctx.profile}: " + (_changes(common) or "nothing"),
             f"{len(ctx.runs)} runs:"]
    width = max(len(run.label) for run in ctx.runs)
    for run, d in zip(ctx.runs, diffs):
        own = {k: v for k, v in d.items() if k not in common}
        paper = f"paper {run.paper:g}" if run.paper is not None else "paper -"
        lines.append(f"  {run.label:{width}s}  {paper:11s}  key {run.key}  {_changes(own) or '(baseline)'}")
    if study.boundary:
        lines.append(f"boundary search: {boundary.describe(study.boundary)}; the runs above are the probes so far, "
                     f"{ctx.launcher.concurrent(ctx.resources)} more at a time after them")
    r = ctx.resources
    lines.append(f"resources ({ctx.profile}): nodes {r.nodes}, GPUs/node {r.gpus_per_node}, CPUs/task "
                 f"{r.cpus_per_task}, tasks/node {r.tasks}, memory {r.mem_gb:g} GB, time {r.time_min} min, partition "
                 f"{r.partition or '(cluster default)'}, array parallelism {r.array_parallelism}, "
                 f"signal {r.signal_delay_s} s before the limit, {r.max_timeouts} requeues on time limit")
    lines.extend(ctx.launcher.dry_run_lines(ctx.results, r, study.name, len(ctx.runs)))
    return "\n".join(lines)


def print_config(ctx) -> str:
    """One table per run, named by its label (by its folder's name where two option sets of the
    study give runs one label)."""
    header = [f"# {ctx.study.name}: the resolved config of each of its {len(ctx.runs)} runs, by run label",
              f"# ({' | '.join(o.words() for o in ctx.options.selected)})", ""]
    labels = Counter(run.label for run in ctx.runs)
    tables = {run.label if labels[run.label] == 1 else run.name: run.config.to_dict() for run in ctx.runs}
    return "\n".join(header) + tomli_w.dumps(tables)


def _changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in sorted(changes.items()))
