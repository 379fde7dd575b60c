"""``python -m studies.run``: expand a study, consult the ledger, launch what is missing.

Everything is validated (study file, profile, ``--set``, every run's config, resources, observers,
results folder and storage, and, for a launch, each run's data as this machine sees it: on SLURM
the login node) before any folder, ledger or job is created, and refused as ``core.cli`` refuses.
Then: RUNNING trials whose job died are marked FAIL; runs that are done or running are skipped;
missing runs (or, with ``--retry-failed``, exactly the failed ones, as new attempts that resume
from the run folder's checkpoint) are launched. The options a results folder was launched with
are its study's identity (``identity``): later commands there reuse them, and refuse others.
The runs are claimed as they are launched (``attempts``): the ledger is read again, and a run
that another launcher on the same study started meanwhile, or whose folder is in training, is left
to its owner. What differs between clusters is the launcher's (``launchers``). ``--status``,
``--dry-run``, ``--print-config`` and ``--list`` write nothing (but repair a damaged journal).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import cli
from core.config import ConfigError
from studies import boundary, catalog, claims, identity, launchers, liveness, plan, spec, status
from studies.attempts import Claimer
from studies.autoreport import import_in_background, write_report, write_report_if_stale
from studies.dryrun import dry_run, print_config
from studies.layout import Attempt, Layout
from studies.ledger import Ledger, storage_problem
from studies.spec import Resources, SpecError, Study

CLUSTER_ENV = "STUDIES_CLUSTER"
# The engine's "on finished": the one place the studies engine names the report builder.
REPORT_BUILDER = "reports.build:build_report"


@dataclass(frozen=True)
class Context:
    """One invocation, fully validated."""

    study: Study
    profile: str
    runs: list[plan.Run]  # the runs this command works on
    resources: Resources
    launcher: launchers.Launcher  # where the runs execute
    results: Path
    storage: str
    observers: dict[str, str]
    options: identity.Identity  # the option sets it works on, and those study.json records
    given: identity.Given
    add_runs: bool
    runs_of: identity.Planner  # an option set's runs, each expanded once

    @property
    def cluster(self) -> str:
        return self.launcher.name

    @property
    def planned(self) -> list[plan.Run]:
        """Every run of the study, of all the option sets it records after this command."""
        return identity.union(self.runs_of(o) for o in self.options.record)


def parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(
        prog="python -m studies.run", description="Run a DINO ablation study from ablations/: "
        "plan its runs, keep a ledger, launch what is missing and record every run.")
    p.add_argument("study", nargs="?", help="study name (see --list) or path to a study .toml file")
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--studies", metavar="DIR",
                   help=f"a folder of your own study files, listed and named like ablations/ (default: ${catalog.ENV})")
    p.add_argument("--dry-run", action="store_true",
                   help="show the runs, their config differences and (--cluster slurm) the sbatch script")
    p.add_argument("--print-config", action="store_true",
                   help="print every run's resolved config as TOML (one table per run) and exit; writes nothing")
    p.add_argument("--status", action="store_true", help="show done / running / failed / missing per run")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun exactly the failed runs as new attempts (they resume from their checkpoint)")
    p.add_argument("--add-runs", action="store_true",
                   help="add the runs of other --set/--seeds/--data than the results folder was launched with "
                        "to its study (otherwise refused)")
    p.add_argument("--cluster", choices=launchers.CLUSTERS, default=os.environ.get(CLUSTER_ENV, "local"),
                   help=f"where runs execute (default: ${CLUSTER_ENV} if set, else local; never guessed)")
    cli.add_profile(p, default=None, help="scale to run at (default: the study's)")
    cli.add_data(p)
    p.add_argument("--partition", help="SLURM partition (overrides the study's resources)")
    p.add_argument("--seeds", type=int, metavar="N", help="run seeds 0..N-1 (default: the study's)")
    cli.add_set(p, "override a config value for every run, e.g. --set epochs=20")
    p.add_argument("--results", metavar="DIR", help="results folder (default: runs/<study>; shared on SLURM)")
    p.add_argument("--storage", metavar="URL",
                   help="optuna storage URL or journal file (default: <results>/ledger.journal)")
    p.add_argument("--observer", action="append", default=[], metavar="NAME=ARG",
                   help="extra observer: tensorboard=DIR, wandb=PROJECT, or one of sacred's (mongo_db=mongodb://host/db) (repeatable)")
    p.add_argument("--max-parallel", type=int, default=None, metavar="N",
                   help="local runs executing at once (default: this machine's cores divided by the "
                        "profile's cpus_per_task; 1 for GPU profiles)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser().parse_args(argv)
    except cli.UsageError as error:
        return cli.refuse(str(error))
    user_dir, problem = catalog.folder(args.studies)
    if problem:
        return cli.refuse(problem)
    if args.list:
        for name, path in catalog.available(user_dir).items():
            where = f"  ({path.parent})" if user_dir and path.parent == user_dir else ""
            print(f"{name:22s} {spec.describe(path)}{where}")
        return 0
    if not args.study:
        return cli.refuse("name a study (see --list)")
    try:
        ctx = context(args, user_dir)
        if ctx.options.note:
            print(ctx.options.note, file=sys.stderr)
        if args.print_config:
            print(print_config(ctx), end="")
            return 0
        if args.dry_run:
            print(dry_run(ctx))
            return 0
        if args.status:
            return show_status(ctx)
        ctx = record(ctx)
        ledger = Ledger.create(ctx.storage, ctx.study.name, ctx.study.direction, ctx.study.metric)
    except SpecError as error:  # a study file's problems start with the file, the others with "error:"
        study_file = [str(Path(args.study))] if Path(args.study).is_file() else []
        own = [str(user_dir)] if user_dir else []
        return cli.refuse(error.lines, files=[str(spec.study_dir()), *own, *study_file])
    trials = ledger.trials()
    jobs = liveness.job_states(trials)
    for trial in trials:
        job = jobs.get(trial.number)
        if job and job.state == "dead" and ledger.fail(trial.number, job.reason):
            print(f"marked failed: {Attempt.of(trial).label} (trial {trial.number}): {job.reason}")
    rows = status.statuses(ctx.runs, ledger.attempts(), jobs)
    if ctx.study.boundary:
        return search_boundary(ctx, ledger, rows, args.retry_failed, argv)
    return launch_missing(ctx, ledger, rows, args.retry_failed, argv)


def search_boundary(ctx: Context, ledger: Ledger, rows: list[status.RunStatus], retry_failed: bool,
                    argv: list[str]) -> int:
    """Probe a boundary study round by round (``studies.boundary``), each round's probes
    launched as the missing runs of the study grown by them; 1 if failed probes hold the search.
    A launcher that waits writes the report once, when the search stops or has to wait."""
    if retry_failed:
        launch_missing(ctx, ledger, rows, True, argv, report=False)

    def runs_of(grown: Study) -> list[plan.Run]:
        return identity.union(identity.planner(grown)(o) for o in ctx.options.selected)

    def launch(grown: Study) -> None:
        round_ctx = record(dataclasses.replace(ctx, study=grown, runs=runs_of(grown), runs_of=identity.planner(grown)))
        launch_missing(round_ctx, ledger, status.statuses(round_ctx.runs, ledger.attempts()), False, argv,
                       report=False)

    final = boundary.search(ctx.study, ledger, runs_of, launch, ctx.launcher.concurrent(ctx.resources))
    if ctx.launcher.waits:
        write_report_if_stale(REPORT_BUILDER, ctx.study.name, ctx.results, ctx.storage, ledger.trials())
    if not final.held:
        return 0
    held = status.statuses(runs_of(boundary.study_with_probes(ctx.study, final.held)), ledger.attempts())
    return 1 if any(row.state == "failed" for row in held) else 0


def show_status(ctx: Context) -> int:
    """The table from the ledger as it is, writing nothing: a job found dead shows as failed
    here, and the next launch records that in the ledger."""
    ledger = Ledger.read(ctx.storage, ctx.study.name)
    attempts = ledger.attempts(status.STATUS_ATTRS) if ledger else {}
    jobs = liveness.job_states(t for trials in attempts.values() for t in trials)
    for trials in attempts.values():
        for trial in trials:
            if trial.number in jobs and jobs[trial.number].state == "dead":
                print(f"marked failed: {Attempt.of(trial).label} (trial {trial.number}): "
                      f"{jobs[trial.number].reason} (recorded in the ledger by the next launch)")
    rows = status.statuses(ctx.runs, attempts, jobs)
    print(status.table(rows, ctx.study.metric))
    if ctx.study.boundary:
        found = boundary.verdicts(boundary.recorded(rows, ctx.study.boundary.name))
        print(f"boundary: {boundary.state(ctx.study.boundary, found).why}")
    return 0


def record(ctx: Context) -> Context:
    """Write ``study.json`` with the study's options, checked again under the launch lock
    (another launcher may have recorded some since ``context`` read it); the invocation as
    recorded, whose runs are the ones to launch."""
    with claims.launching(ctx.results):
        recorded = identity.recheck(ctx.study, ctx.results, ctx.options, ctx.given, ctx.add_runs, ctx.runs_of)
        runs = identity.union(ctx.runs_of(o) for o in recorded.selected)
        ctx = dataclasses.replace(ctx, options=recorded, runs=runs)
        identity.write_plan(ctx.results, ctx.study, ctx.profile, ctx.cluster, ctx.storage, recorded.record,
                            ctx.planned)
    return ctx


def launch_missing(ctx: Context, ledger: Ledger, rows: list[status.RunStatus], retry_failed: bool,
                   argv: list[str], report: bool = True) -> int:
    """Launch the missing runs (or, retrying, the failed ones); 1 if a run failed that the launcher
    waited for, or that sbatch refused. ``report``: write the study's report at the end."""
    wanted = "failed" if retry_failed else "missing"
    todo = [row for row in rows if row.state == wanted]
    before = status.summary(rows)
    if not todo:
        print(f"nothing to submit ({before})")
        if not retry_failed and any(r.state == "failed" for r in rows):
            print("failed runs are rerun with --retry-failed")
        if report:
            write_report_if_stale(REPORT_BUILDER, ctx.study.name, ctx.results, ctx.storage, ledger.trials())
        print(f"results: {ctx.results}")
        return 0
    print(f"{ctx.study.name}: launching {len(todo)} {wanted} run(s) on {ctx.cluster} "
          f"(profile {ctx.profile}); before: {before}")
    launcher = ctx.launcher
    if launcher.waits and report:  # otherwise the last job to end writes the report
        import_in_background(REPORT_BUILDER)
    tracker = launchers.Tracker(ledger, ctx.study.metric, ctx.runs, {row.run.key for row in todo}, launcher.at_once)
    try:
        executor = launcher.executor(Layout(ctx.results).submitit / _stamp(), ctx.resources, ctx.study.name)
        launcher.launch(executor, todo, Claimer(ctx, ledger, REPORT_BUILDER).claim, tracker)
    except KeyboardInterrupt:  # Ctrl-C reaches the local jobs too: they stop and report FAIL
        print(f"\ninterrupted: stopped runs resume from their checkpoints with --retry-failed; "
              f"runs not started yet with a plain rerun (results: {ctx.results})", file=sys.stderr)
        return 130
    print(status.table(tracker.rows(), ctx.study.metric))
    if launcher.waits and report:
        write_report(REPORT_BUILDER, ctx.study.name, ctx.results, ctx.storage)
    print(f"results: {ctx.results}  (ledger: {ctx.storage}; sacred runs: {ctx.results / 'sacred'})")
    hint = launcher.follow_hint(argv)
    if hint:
        print(hint)
    return 1 if tracker.failed else 0


def context(args: argparse.Namespace, user_dir: Path | None = None) -> Context:
    """Validate the invocation completely; raises ``SpecError`` with every problem found."""
    path = Path(args.study)
    if args.study not in catalog.available(user_dir) and path.is_file() and path.suffix != ".toml":
        raise SpecError([f"{path} is a file but not a study: a study is a .toml file (see --list)"])
    study = spec.load(catalog.resolve(args.study, user_dir))
    errors: list[str] = []
    settings: dict[str, Any] = {}
    try:
        settings = cli.assignments(args.set, functools.partial(plan.override_problem, study))
    except ConfigError as error:
        errors.append(str(error))
    if args.data == "":
        errors.append("--data '': give the data set's folder")
    if args.seeds is not None and args.seeds < 1:
        errors.append(f"--seeds {args.seeds}: give a count of at least 1")
    if args.cluster not in launchers.CLUSTERS:  # argparse does not check a default from the environment
        errors.append(f"${CLUSTER_ENV}={args.cluster}: choose one of {', '.join(launchers.CLUSTERS)}")
    if args.max_parallel is not None and args.max_parallel < 1:
        errors.append(f"--max-parallel {args.max_parallel}: give at least 1")
    launching = not (args.status or args.dry_run or args.print_config)  # the read-only commands write nowhere
    results = args.results if args.results is not None else str(Path("runs") / study.name)
    storage = args.storage if args.storage is not None else str(Layout(Path(results).absolute()).journal)
    problems = [cli.folder_problem(results, "--results", launching)]
    if args.storage is not None:  # the default is in the results folder
        problems.append(storage_problem(storage, launching))
    errors.extend(p for p in problems if p)
    observers: dict[str, str] = {}
    if args.observer:  # checked against sacred's own options: sacred (about 1 s) is imported only then
        from studies.record import observer_options
        try:
            observers = observer_options(args.observer)
        except SpecError as error:
            errors.extend(error.lines)
    if errors:
        raise SpecError(errors)
    if study.boundary:  # its axis: the two ends and every value probed so far
        if args.seeds is not None and args.seeds % 2 == 0:
            raise SpecError([f"--seeds {args.seeds}: a boundary study takes the majority of an odd number of "
                             "seeds (a tie decides nothing); give 1 or 3"])
        ledger = Ledger.read(storage, study.name)
        seen = boundary.probed(ledger.trials() if ledger else (), study.boundary.name)
        study = boundary.study_with_probes(study, (study.boundary.low, study.boundary.high, *seen))
    given = identity.Given(args.profile, settings, args.data or None, args.seeds)
    runs_of = identity.planner(study)
    found = identity.resolve(study, identity.read_plan(Path(results)), given, args.add_runs, runs_of,
                             Path(results).absolute())
    runs = identity.union(runs_of(o) for o in found.selected)
    resources = study.resources(found.profile)
    if args.partition:
        resources = dataclasses.replace(resources, partition=args.partition)
    launcher = launchers.launcher(args.cluster, args.max_parallel or launchers.default_parallelism(resources))
    tasks = launcher.tasks_per_run(resources)
    problems = plan.data_problems(runs, found.profile, tasks, study.labels_for) if launching else []
    if problems:
        raise SpecError(problems)
    return Context(study, found.profile, runs, resources, launcher, Path(results).absolute(), storage, observers,
                   found, given, args.add_runs, runs_of)


def _stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


if __name__ == "__main__":
    sys.exit(main())
