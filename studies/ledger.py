"""The ledger: one optuna study per study, one trial per attempt of a run.

Optuna is the storage, not the search: trials are created with ``ask()`` and described by user
attributes (run key, seed, attempt, job id, folders), so re-running a study never duplicates a
point and a failed attempt never hides its run (the traps of ``GridSampler``). The launcher creates
an attempt's trial before the job exists; the job itself tells the trial COMPLETE (with the study's
metric as its value) or FAIL, so the ledger is right after the launcher has exited (SLURM).
A job that dies without telling is found by ``liveness`` and marked FAIL here.

Reading never writes: opening a ledger that exists, listing its trials and a launch that finds
nothing to do leave the journal byte-identical (optuna's ``create_study`` appends an entry on
every call, even when the study exists, so it is called only for a study that does not). The one
exception is a damaged journal, which any opening repairs (``studies.journal``).

A storage is checked before a launch creates anything (``storage_problem``): a journal path that
is a folder or cannot be written, a URL that does not parse, a database without its driver
installed; a database that refuses the connection is one line too, not a traceback.
"""
from __future__ import annotations

import contextlib
import gc
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from core import cli
from studies import journal, params
from studies.layout import Attempt
from studies.plan import Run
from studies.spec import SpecError, Study

optuna.logging.set_verbosity(optuna.logging.WARNING)

STATE_NAMES = {TrialState.COMPLETE: "done", TrialState.RUNNING: "running", TrialState.FAIL: "failed"}


def storage_problem(url: str, writing: bool) -> str | None:
    """Why ``url`` (``--storage``) cannot hold a ledger, found without connecting to anything
    (and, unless ``writing``, without checking it can be written); None if it can."""
    if "://" not in url and not re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", url):  # "sqlite:/x" is a bad URL
        return cli.file_problem(url, "--storage", writing)
    from sqlalchemy import exc
    from sqlalchemy.engine import make_url

    fix = "give a journal file path, or a URL such as sqlite:///ledger.db or postgresql://user@host/db"
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except exc.NoSuchModuleError:  # before its base class ArgumentError
        return f"--storage {url}: {url.split(':', 1)[0]!r} is not a database SQLAlchemy knows; {fix}"
    except exc.ArgumentError:
        return f"--storage {url}: not a database URL; {fix}"
    try:
        (getattr(dialect, "import_dbapi", None) or dialect.dbapi)()
    except ImportError as error:
        return (f"--storage {url}: the {parsed.drivername} driver is not installed ({error}); install it, "
                "or give a journal file path or sqlite:///ledger.db")
    if parsed.get_backend_name() != "sqlite":
        return None
    if parsed.database in (None, "", ":memory:"):
        return f"--storage {url}: an in-memory database is lost with the launcher and unseen by its jobs; {fix}"
    return cli.file_problem(parsed.database, "--storage", writing)


def open_storage(url: str) -> BaseStorage:
    """An optuna storage URL (``sqlite:///...``, ``postgresql://...``) or a journal file path
    (a damaged one is repaired first, saying so in one line: ``studies.journal``)."""
    if "://" in url:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return RDBStorage(url)  # optuna.load_study puts its cache in front of it
        except (SQLAlchemyError, ImportError, ValueError) as error:  # a server down, a login refused
            raise SpecError([f"--storage {url}: cannot be opened: {str(error).splitlines()[0]}"]) from error
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    damage = journal.repair(path)
    if damage:
        print(damage, file=sys.stderr, flush=True)
    with _collection_paused():
        return journal.Journal(path)  # from its snapshot: only the entries after it are replayed


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a ledger is read whole: that creates a
    million objects, none of them garbage, and every 700 new ones would set off a collection;
    the full ones among them walk every object the process holds (in a job, torch's too). A
    journal's snapshot, or a database's 10,000 trials, then loads in under half the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Ledger:
    def __init__(self, study: optuna.Study, opened: BaseStorage | None = None):
        self.study = study
        self.storage = study._storage  # optuna exposes no public getter; the storage API is public
        self._opened = opened or self.storage  # a database without the cache optuna puts in front of it
        self.study_id = self.storage.get_study_id_from_name(study.study_name)
        self._held_distributions: dict[str, BaseDistribution] | None = None

    @classmethod
    def create(cls, url: str, name: str, direction: str, metric: str) -> Ledger:
        """Open the study's ledger, creating it on first use (launcher side). The metric's name
        labels the objective in optuna-dashboard (otherwise "Objective 0")."""
        storage = open_storage(url)
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:  # first use; two launchers creating it at once get the same study
            study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
        if study.direction.name.lower() != direction:
            raise SpecError([(f"--storage {url}: study {name!r} was created to {study.direction.name.lower()} "
                              f"its metric, this one would {direction} it; use another --results or --storage")])
        if study.metric_names != [metric]:
            with warnings.catch_warnings():  # experimental since optuna 3.2, unchanged through 4.x
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([metric])
        return cls(study, storage)

    @classmethod
    def load(cls, url: str, name: str) -> Ledger:
        """Open an existing ledger (job side: the launcher created it); ``KeyError`` if the
        storage holds no study of that name."""
        storage = open_storage(url)
        return cls(optuna.load_study(study_name=name, storage=storage), storage)

    @classmethod
    def read(cls, url: str, name: str) -> Ledger | None:
        """The ledger if there is one, for commands that only read (``--status``); creates nothing."""
        if "://" not in url and not Path(url).is_file():  # a journal not written yet
            return None
        try:
            return cls.load(url, name)
        except KeyError:
            return None

    # -- reading ----------------------------------------------------------------------------------
    def trials(self, attrs: Collection[str] | None = None) -> list[FrozenTrial]:
        """Every trial, oldest first. Given ``attrs``, the user attributes a reader takes, a
        database gives each trial with its number, state and value and those attributes alone:
        optuna would read every row of every trial, their params, intermediate values and 36
        attributes each (at 10,000 trials, 430,000 rows: 5.3 s, against 0.45 s for the 16
        attributes of ``--status``). A journal has replayed its trials whole anyway, and gives
        them so."""
        with _collection_paused():
            if attrs is None or not isinstance(self._opened, RDBStorage):
                return self.study.get_trials(deepcopy=False)
            return _rdb_trials(self._opened, self.study_id, attrs)

    def any_running(self) -> bool:
        """Whether an attempt is still RUNNING, at a cost that does not grow with the study. A
        database is asked for one such row: optuna's storage API would first load every RUNNING
        trial with its attributes, and a SLURM study's trials are all RUNNING from submission on
        (its cache, every trial). A journal looks in the state it has replayed anyway."""
        if not isinstance(self._opened, RDBStorage):
            return bool(self._opened.get_all_trials(self.study_id, deepcopy=False, states=(TrialState.RUNNING,)))
        from optuna.storages._rdb.models import TrialModel  # optuna's schema, checked when the storage opened
        from sqlalchemy import select

        query = select(TrialModel.trial_id).where(TrialModel.study_id == self.study_id,
                                                  TrialModel.state == TrialState.RUNNING).limit(1)
        with self._opened.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def trial(self, number: int) -> FrozenTrial:
        return self.storage.get_trial(self._trial_id(number))

    def attempts(self, attrs: Collection[str] | None = None) -> dict[str, list[FrozenTrial]]:
        """Run key -> its trials, oldest attempt first (``attrs``: as ``trials`` takes them)."""
        found: dict[str, list[FrozenTrial]] = {}
        for trial in self.trials(attrs):
            key = Attempt.of(trial).run_key
            if key:
                found.setdefault(key, []).append(trial)
        for trials in found.values():
            trials.sort(key=lambda t: Attempt.of(t).attempt)
        return found

    # -- writing ----------------------------------------------------------------------------------
    def new_attempt(self, attrs: Mapping[str, Any], study: Study | None = None, profile: str | None = None,
                    run: Run | None = None) -> int:
        """A RUNNING trial for one attempt of a run, with its attributes and (given the ``run`` of
        ``study`` on ``profile``) its axes as params, all in one storage write; returns its number.
        Created from a template rather than by ``ask()``, which would refuse a categorical axis
        that gained a value (``studies.params``)."""
        given = params.settle(params.declared(study, profile, run), self._held()) if study and profile and run else {}
        distributions = {k: d for k, (_, d) in given.items()}
        template = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs=dict(attrs),
                                             params={k: v for k, (v, _) in given.items()},
                                             distributions=distributions)
        number = self.storage.get_trial_number_from_id(self.storage.create_new_trial(self.study_id, template))
        self._held().update(distributions)
        return number

    def _held(self) -> dict[str, BaseDistribution]:
        """The newest distribution of each param, read from the trials once per ledger opened and
        then kept up to date by ``new_attempt``: reading them again for every new attempt made a
        launch of N runs take N^2 trial reads. (Another launcher widening an axis meanwhile is
        seen at the next open; a trial with an older distribution is still a valid trial.)"""
        if self._held_distributions is None:
            self._held_distributions = {}
            for trial in reversed(self.trials()):
                self._held_distributions = {**trial.distributions, **self._held_distributions}
        return self._held_distributions

    def set_attrs(self, number: int, attrs: Mapping[str, Any]) -> None:
        trial_id = self._trial_id(number)
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)

    def report(self, number: int, step: int, value: float) -> None:
        """An intermediate value of the metric (optuna-dashboard draws them as learning curves)."""
        self.storage.set_trial_intermediate_value(self._trial_id(number), step, value)

    def complete(self, number: int, value: float, attrs: Mapping[str, Any]) -> None:
        self.set_attrs(number, attrs)
        self.study.tell(number, value)

    def fail(self, number: int, reason: str) -> bool:
        """Mark a RUNNING trial FAIL with a one-line reason; False if it had finished meanwhile."""
        if self.trial(number).state != TrialState.RUNNING:
            return False
        try:
            self.set_attrs(number, {"error": reason[:500]})
            self.study.tell(number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # the job told its own outcome in between
            return False
        return True

    def _trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)


def _rdb_trials(storage: RDBStorage, study_id: int, attrs: Collection[str]) -> list[FrozenTrial]:
    """``Ledger.trials(attrs)`` on a database, from optuna's own tables (models as in
    ``Ledger.any_running``; values and attributes decoded as its storage decodes them). The
    states are read first: a trial that finishes meanwhile shows as the RUNNING it was, with
    what its job wrote since, as it would if its job were asked about after a whole read."""
    from optuna.storages._rdb.models import TrialModel, TrialUserAttributeModel, TrialValueModel
    from sqlalchemy import select

    in_study = select(TrialModel.trial_id).where(TrialModel.study_id == study_id)
    with storage.engine.connect() as connection:
        trials = connection.execute(select(TrialModel.trial_id, TrialModel.number, TrialModel.state)
                                    .where(TrialModel.study_id == study_id).order_by(TrialModel.trial_id)).all()
        stored = connection.execute(select(TrialValueModel.trial_id, TrialValueModel.value, TrialValueModel.value_type)
                                    .where(TrialValueModel.trial_id.in_(in_study))
                                    .order_by(TrialValueModel.trial_id, TrialValueModel.objective)).all()
        found = connection.execute(select(TrialUserAttributeModel.trial_id, TrialUserAttributeModel.key,
                                          TrialUserAttributeModel.value_json)
                                   .where(TrialUserAttributeModel.trial_id.in_(in_study),
                                          TrialUserAttributeModel.key.in_(list(attrs)))).all()
    values: dict[int, list[float]] = {}
    for trial_id, value, kind in stored:
        values.setdefault(trial_id, []).append(TrialValueModel.stored_repr_to_value(value, kind))
    user_attrs: dict[int, dict[str, Any]] = {}
    for trial_id, key, value_json in found:
        user_attrs.setdefault(trial_id, {})[key] = json.loads(value_json)
    return [FrozenTrial(number=number, state=state, value=None, values=values.get(trial_id), datetime_start=None,
                        datetime_complete=None, params={}, distributions={}, user_attrs=user_attrs.get(trial_id, {}),
                        system_attrs={}, intermediate_values={}, trial_id=trial_id)
            for trial_id, number, state in trials]
