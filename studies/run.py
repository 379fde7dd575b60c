"""``python -m studies.run``: expand a study, consult the ledger, launch what is missing.

Everything is validated (study file, profile, ``--set``, every run's config, resources, observers,
results folder and storage, and, for a launch, each run's data as this machine sees it: on SLURM
the login node) before any folder, ledger or job is created, and refused as ``core.cli`` refuses.
Then: RUNNING trials whose job died are marked FAIL; runs that are done or running are skipped;
missing runs (or, with ``--retry-failed``, exactly the failed ones, as new attempts that resume
from the run folder's checkpoint) are launched. The options a results folder was launched with
are its study's identity (``identity``): later commands there reuse them, and refuse others.
Each run is claimed just before it starts (``claims``): the ledger is read again, and a run that
another launcher on the same study started meanwhile, or whose folder is in training, is left to
its owner. ``--status``, ``--dry-run``, ``--print-config`` and ``--list`` write nothing (but repair a
damaged journal).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from optuna.trial import TrialState

from core import cli
from core.config import ConfigError
from studies import catalog, claims, identity, launch, liveness, plan, progress, slots, spec, status
from studies.dryrun import dry_run, print_config
from studies.autoreport import import_in_background, write_report, write_report_if_stale
from studies.job import JobSpec, RunJob
from studies.layout import Attempt, Layout

# The engine's "on finished": the one place the studies engine names the report builder.
REPORT_BUILDER = "reports.build:build_report"
from studies.ledger import Ledger, storage_problem
from studies.record import observer_options
from studies.spec import Resources, SpecError, Study

CLUSTER_ENV = "STUDIES_CLUSTER"


@dataclass(frozen=True)
class Context:
    """One invocation, fully validated."""

    study: Study
    profile: str
    runs: list[plan.Run]  # the runs this command works on
    resources: Resources
    cluster: str
    results: Path
    storage: str
    observers: dict[str, str]
    max_parallel: int
    options: identity.Identity  # the option sets it works on, and those study.json records
    given: identity.Given
    add_runs: bool
    runs_of: identity.Planner  # an option set's runs, each expanded once

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
    p.add_argument("--cluster", choices=launch.CLUSTERS, default=os.environ.get(CLUSTER_ENV, "local"),
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
            print(f"marked failed: {trial.user_attrs.get('label')} (trial {trial.number}): {job.reason}")
    rows = status.statuses(ctx.runs, ledger.attempts(), jobs)
    return launch_missing(ctx, ledger, rows, args.retry_failed, argv)


def show_status(ctx: Context) -> int:
    """The table from the ledger as it is, writing nothing: a job found dead shows as failed
    here, and the next launch records that in the ledger."""
    ledger = Ledger.read(ctx.storage, ctx.study.name)
    attempts = ledger.attempts() if ledger else {}
    jobs = liveness.job_states(t for trials in attempts.values() for t in trials)
    for trials in attempts.values():
        for trial in trials:
            if trial.number in jobs and jobs[trial.number].state == "dead":
                print(f"marked failed: {trial.user_attrs.get('label')} (trial {trial.number}): "
                      f"{jobs[trial.number].reason} (recorded in the ledger by the next launch)")
    print(status.table(status.statuses(ctx.runs, attempts, jobs), ctx.study.metric))
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
                   argv: list[str]) -> int:
    """Launch the missing runs (or, retrying, the failed ones); 1 if a run waited for failed."""
    wanted = "failed" if retry_failed else "missing"
    todo = [row for row in rows if row.state == wanted]
    before = status.summary(rows)
    if not todo:
        print(f"nothing to submit ({before})")
        if not retry_failed and any(r.state == "failed" for r in rows):
            print("failed runs are rerun with --retry-failed")
        write_report_if_stale(REPORT_BUILDER, ctx.study.name, ctx.results, ctx.storage, ledger.trials())
        print(f"results: {ctx.results}")
        return 0
    print(f"{ctx.study.name}: launching {len(todo)} {wanted} run(s) on {ctx.cluster} "
          f"(profile {ctx.profile}); before: {before}")
    if ctx.cluster != "slurm":  # on SLURM the last job to finish writes the report
        import_in_background(REPORT_BUILDER)
    try:
        failed = submit(ctx, ledger, todo)
    except KeyboardInterrupt:  # Ctrl-C reaches the local jobs too: they stop and report FAIL
        print(f"\ninterrupted: stopped runs resume from their checkpoints with --retry-failed; "
              f"runs not started yet with a plain rerun (results: {ctx.results})", file=sys.stderr)
        return 130
    print(status.table(_rows(ctx, ledger), ctx.study.metric))
    if ctx.cluster != "slurm":  # on SLURM the last job to finish writes it
        write_report(REPORT_BUILDER, ctx.study.name, ctx.results, ctx.storage)
    print(f"results: {ctx.results}  (ledger: {ctx.storage}; sacred runs: {ctx.results / 'sacred'})")
    if ctx.cluster == "slurm":
        again = [a for a in argv if a != "--retry-failed"]
        print("watch: " + shlex.join(["python", "-m", "studies.run", *again, "--status"]))
    return 1 if failed else 0


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
    if args.cluster not in launch.CLUSTERS:  # argparse does not check a default from the environment
        errors.append(f"${CLUSTER_ENV}={args.cluster}: choose one of {', '.join(launch.CLUSTERS)}")
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
    try:
        observers = observer_options(args.observer)
    except SpecError as error:
        errors.extend(error.lines)
    if errors:
        raise SpecError(errors)
    given = identity.Given(args.profile, settings, args.data or None, args.seeds)
    runs_of = identity.planner(study)
    found = identity.resolve(study, identity.read_plan(Path(results)), given, args.add_runs, runs_of,
                             Path(results).absolute())
    runs = identity.union(runs_of(o) for o in found.selected)
    resources = study.resources(found.profile)
    if args.partition:
        resources = dataclasses.replace(resources, partition=args.partition)
    tasks = resources.world_size if args.cluster == "slurm" else 1  # a local run is one process
    problems = plan.data_problems(runs, found.profile, tasks, study.labels_for) if launching else []
    if problems:
        raise SpecError(problems)
    max_parallel = args.max_parallel or launch.default_parallelism(resources)
    return Context(study, found.profile, runs, resources, args.cluster, Path(results).absolute(), storage, observers,
                   max_parallel, found, given, args.add_runs, runs_of)


def submit(ctx: Context, ledger: Ledger, todo: list[status.RunStatus]) -> list[str]:
    """Create each run's attempt in the ledger and launch it; returns the labels that failed
    (local and debug, which wait for their runs; SLURM returns once the arrays are submitted)."""
    folder = Layout(ctx.results).submitit / _stamp()
    ex = launch.executor(ctx.cluster, folder, ctx.resources, ctx.study.name)
    preparers = [_preparer(ctx, ledger, row) for row in todo]
    failed: list[str] = []
    queued = {row.run.key: row.latest.number if row.latest else None for row in todo}

    def submitted(job_spec: JobSpec, job: submitit.Job) -> None:
        attrs: dict[str, Any] = {"job_id": job.job_id, "submitit_dir": str(job.paths.folder)}
        if ctx.cluster == "local":
            attrs.update(liveness.owner_attrs("job", int(job.job_id)))
            print(f"[{job_spec.label}] submitted: job {job.job_id}, log {job.paths.stdout}", flush=True)
        elif ctx.cluster == "debug":
            attrs.update(liveness.owner_attrs("job", os.getpid()))
        ledger.set_attrs(job_spec.trial, attrs)

    def finished(job_spec: JobSpec, job: submitit.Job) -> None:
        trial = ledger.trial(job_spec.trial)
        if trial.state == TrialState.RUNNING:
            ledger.fail(job_spec.trial, f"job {job.job_id} ended without reporting; see {job.paths.stderr}")
            trial = ledger.trial(job_spec.trial)
        if trial.state == TrialState.COMPLETE:
            print(f"[{job_spec.label}] done: {ctx.study.metric} = {trial.value:.2f}", flush=True)
        else:
            failed.append(job_spec.label)
            error = str(trial.user_attrs.get("error"))
            log = "" if str(job.paths.stderr) in error else f" (log: {job.paths.stderr})"
            print(f"[{job_spec.label}] FAILED: {error}{log}", flush=True)
        print(progress.line(_rows(ctx, ledger), queued, ctx.max_parallel if ctx.cluster == "local" else 1), flush=True)

    if ctx.cluster == "slurm":
        specs = [job_spec for prepare in preparers if (job_spec := prepare())]
        try:
            jobs = launch.submit_slurm(ex, specs)
        except launch.SubmitError as error:  # sbatch's own words; the refused runs stay missing
            print(error, file=sys.stderr, flush=True)
            jobs = error.jobs
            failed.extend(s.label for s in specs[len(jobs):])
        for job_spec, job in zip(specs, jobs):
            submitted(job_spec, job)
        print(f"submitted {len(jobs)} run(s): job ids {', '.join(j.job_id for j in jobs) or '-'}; logs in {folder}")
    elif ctx.cluster == "local":
        launch.run_local(ex, preparers, ctx.max_parallel, submitted, finished)
    else:
        for job_spec in filter(None, (prepare() for prepare in preparers)):
            job = ex.submit(RunJob(job_spec))
            submitted(job_spec, job)
            with contextlib.suppress(Exception):  # the job told the ledger; finished() prints it
                job.results()  # runs it here; the debug executor opens pdb on an error
            finished(job_spec, job)
    return failed


def _rows(ctx: Context, ledger: Ledger) -> list[status.RunStatus]:
    """Each run's state now, a RUNNING trial's as its job's (pending, running)."""
    attempts = ledger.attempts()
    return status.statuses(ctx.runs, attempts, liveness.job_states(t for ts in attempts.values() for t in ts))


def _preparer(ctx: Context, ledger: Ledger, row: status.RunStatus):
    """A callable that claims the run, creating its next attempt in the ledger, and returns its
    job's spec; or None, saying so in one line, when the run is not as ``row`` found it any more
    (another launcher started it meanwhile) or its folder is in training. A retry reuses the run
    folder of the earlier attempts, so the trainer resumes from it."""
    run = row.run
    planned = row.latest.number if row.latest else None
    layout = Layout(ctx.results)
    slot_files = slots.slot_files(layout.slots, ctx.max_parallel) if ctx.cluster == "local" else ()

    def prepare() -> JobSpec | None:
        with claims.launching(ctx.results):
            attempts = ledger.attempts().get(run.key, [])
            latest = attempts[-1] if attempts else None
            if latest is not None and latest.number != planned:
                owner = latest.user_attrs
                print(f"[{run.label}] left to its owner: attempt {owner.get('attempt')} was started meanwhile by "
                      f"launcher pid {owner.get('launcher_pid')} on {owner.get('launcher_host')}", flush=True)
                return None
            run_dir = latest.user_attrs["run_dir"] if latest else str(layout.run_dir(run.name))
            trainer = claims.holder(run_dir)
            if trainer:
                print(f"[{run.label}] left to its owner: {run_dir} is being trained by {trainer}", flush=True)
                return None
            attempt = 1 + max((t.user_attrs.get("attempt", 0) for t in attempts), default=0)
            run_id = f"{run.key}-a{attempt}"
            recorded = Attempt(run_key=run.key, run_id=run_id, attempt=attempt, label=run.label, axes=dict(run.axes),
                               seed=run.seed, paper=run.paper, profile=ctx.profile, cluster=ctx.cluster,
                               results_dir=str(ctx.results), run_dir=run_dir, sacred_dir=str(layout.sacred_run(run_id)))
            number = ledger.new_attempt({**recorded.attrs(), **liveness.owner_attrs("launcher", os.getpid())},
                                        study=ctx.study, profile=ctx.profile, run=run)
        return JobSpec(study=ctx.study.name, storage=ctx.storage, trial=number, run_id=run_id, label=run.label,
                       metric=ctx.study.metric, config=run.config.to_dict(), run_dir=run_dir,
                       sacred_root=str(layout.sacred), observers=ctx.observers,
                       threads=ctx.resources.cpus_per_task, slots=slot_files, report_builder=REPORT_BUILDER)
    return prepare


def _stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


if __name__ == "__main__":
    sys.exit(main())
