"""The axes as optuna params of the ledger's trials (``studies.params``): the distributions by
hand, and a real journal ledger that keeps working when its study gains values."""
from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.trial import TrialState

from studies import params, plan, spec
from studies.ledger import Ledger, open_storage
from studies.run import main
from tests.helpers import trials


def declared(write_study, axes, profile="tiny", **top):
    study = spec.load(str(write_study("grid", axes=axes, **top)))
    return {run.label: params.declared(study, profile, run) for run in plan.expand(study, profile)}


def test_numeric_axes_take_their_key_type_and_power_of_ten_bounds(write_study):
    got = declared(write_study, [
        {"name": "m", "key": "loss.center_momentum", "values": [0, 0.9, 0.999]},  # written 0: a float key
        {"name": "e", "key": "epochs", "values": [100, 300, 800],
         "profiles": {"tiny": {"values": [2, 3, 37]}}},  # the profile's values are what runs train
    ])
    assert got["m=0 e=100 seed=0"] == {"m": (0.0, FloatDistribution(0.0, 1.0)), "e": (2, IntDistribution(0, 100))}
    assert got["m=0.999 e=800 seed=0"] == {"m": (0.999, FloatDistribution(0.0, 1.0)),
                                           "e": (37, IntDistribution(0, 100))}
    assert isinstance(got["m=0 e=100 seed=0"]["m"][0], float) and isinstance(got["m=0 e=100 seed=0"]["e"][0], int)
    edge = declared(write_study, [{"name": "t", "key": "loss.student_temp", "values": [0.01, 0.1]}])
    assert edge["t=0.1 seed=0"]["t"] == (0.1, FloatDistribution(0.0, 0.1))  # a power of ten is its own bound


def test_strings_bools_mixed_and_tables_are_categorical_by_label(write_study):
    got = declared(write_study, [
        {"name": "tau", "key": "loss.teacher_temp", "values": [0.0, 0.04, "0.04->0.07"]},
        {"name": "c", "key": "loss.centering", "values": [True, False]},
        {"name": "v", "values": [{"label": "both", "set": {}},
                                 {"label": "off", "set": {"loss.sharpening": False, "loss.center_momentum": 0.5}}]},
    ], set={"loss.teacher_temp_warmup_epochs": 1})
    assert got["tau=0.04->0.07 c=false v=off seed=0"] == {
        "tau": ("0.04->0.07", CategoricalDistribution(["0", "0.04", "0.04->0.07"])),
        "c": ("false", CategoricalDistribution(["true", "false"])),
        "v": ("off", CategoricalDistribution(["both", "off"]))}


def test_settle_keeps_what_the_ledger_holds_and_widens_only_to_fit():
    held = {"m": FloatDistribution(0.0, 1.0), "u": CategoricalDistribution(["a", "b"]), "e": IntDistribution(0, 100)}
    settled = params.settle({"m": (0.5, FloatDistribution(0.0, 1.0)), "u": ("b", CategoricalDistribution(["b"])),
                             "e": (300, IntDistribution(0, 1000))}, held)
    assert settled == {"m": (0.5, FloatDistribution(0.0, 1.0)), "u": ("b", CategoricalDistribution(["a", "b"])),
                       "e": (300, IntDistribution(0, 1000))}
    grown = params.settle({"u": ("c", CategoricalDistribution(["b", "c"]))}, held)
    assert grown == {"u": ("c", CategoricalDistribution(["a", "b", "c"]))}  # the old choices first, in order


def test_a_ledger_whose_study_gains_values_keeps_taking_runs_and_importances(write_study, tmp_path):
    """An existing journal ledger, relaunched with one more value on a float axis and one more on
    a categorical axis: every new run is recorded with its params; the float axis stays one
    distribution (0.95 is inside [0, 1]); the categorical one is widened once, the old choices
    first; optuna's PED-ANOVA evaluator takes the whole study."""
    results = tmp_path / "results"
    axes = [{"name": "m", "key": "loss.center_momentum", "values": [0.0, 0.9]},
            {"name": "u", "key": "teacher.update", "values": ["momentum"]}]
    argv = ["--results", str(results), "--cluster", "debug", "--set", "epochs=1"]
    assert main([str(write_study("grow", axes=axes)), *argv]) == 0
    axes[0]["values"].append(0.95)
    axes[1]["values"].append("previous_epoch")
    assert main([str(write_study("grow", axes=axes)), *argv]) == 0

    done = trials(results, "grow")
    assert len(done) == 6 and all(t.state == TrialState.COMPLETE for t in done)
    for t in done:
        labels = t.user_attrs["axes"]
        assert t.params == {"m": float(labels["m"]), "u": labels["u"]}
        assert t.distributions["m"] == FloatDistribution(0.0, 1.0)
    old, new = done[:2], done[2:]
    assert {t.distributions["u"] for t in old} == {CategoricalDistribution(["momentum"])}
    widened = CategoricalDistribution(["momentum", "previous_epoch"])
    assert {t.distributions["u"] for t in new if t.params["u"] == "previous_epoch"} == {widened}

    study = optuna.load_study(study_name="grow", storage=open_storage(str(results / "ledger.journal")))
    for evaluator in (None, PedAnovaImportanceEvaluator()):  # None: optuna's default
        importances = get_param_importances(study, evaluator=evaluator)
        assert set(importances) == {"m", "u"} and all(math.isfinite(v) and v >= 0 for v in importances.values())


@pytest.mark.parametrize("decides", ["u", "m"])
def test_importances_across_a_widened_axis_rank_the_axis_that_decides_first(write_study, tmp_path, decides):
    """The same growth, through the ledger alone, with values by hand that only one axis
    decides: PED-ANOVA ranks it first, the widened categorical axis as well as the float one."""
    ledger = Ledger.create(str(tmp_path / "ledger.journal"), "grow", "maximize", "knn_top1")
    axes = [{"name": "m", "key": "loss.center_momentum", "values": [0.0, 0.9]},
            {"name": "u", "key": "teacher.update", "values": ["momentum"]}]
    good = {"u": lambda run: run.axes["u"] == "momentum", "m": lambda run: run.axes["m"] != "0"}[decides]
    seen: set[str] = set()
    for _ in range(2):  # the study as first run, then with one more value on each axis
        study = spec.load(str(write_study("grow", axes=axes, seeds=4)))
        for run in plan.expand(study, "tiny"):
            if run.key not in seen:
                seen.add(run.key)
                number = ledger.new_attempt({"run_key": run.key}, study=study, profile="tiny", run=run)
                ledger.complete(number, 70.0 if good(run) else 10.0, {})
        axes[0]["values"].append(0.95)
        axes[1]["values"].append("previous_epoch")
    assert len(ledger.trials()) == 3 * 2 * 4
    importances = get_param_importances(ledger.study, evaluator=PedAnovaImportanceEvaluator())
    assert list(importances) == [decides, "u" if decides == "m" else "m"]
    assert importances[decides] > 0.5


def test_a_ledger_from_before_params_takes_the_new_runs(write_study, tmp_path):
    """A ledger whose trials have no params (written before this) stays readable and takes new
    trials with params."""
    ledger = Ledger.create(str(tmp_path / "ledger.journal"), "old", "maximize", "knn_top1")
    number = ledger.study.ask().number  # how trials were created before params
    ledger.complete(number, 10.0, {})
    study = spec.load(str(write_study("old", axes=[{"name": "m", "key": "loss.center_momentum",
                                                    "values": [0.9]}])))
    (run,) = plan.expand(study, "tiny")
    again = Ledger.create(str(tmp_path / "ledger.journal"), "old", "maximize", "knn_top1")
    added = again.new_attempt({"run_key": run.key}, study=study, profile="tiny", run=run)
    assert again.trial(added).params == {"m": 0.9} and again.trial(added).user_attrs == {"run_key": run.key}
    assert again.trial(added).state == TrialState.RUNNING and again.trial(number).params == {}


@pytest.mark.parametrize("numbers, bounds", [([0.0], (0.0, 0.0)), ([0.08, 0.04], (0.0, 0.1)),
                                             ([-3, 20], (-10.0, 100.0)), ([1e-4, 5e-4], (0.0, 1e-3))])
def test_bounds_are_the_nearest_powers_of_ten_around_zero(numbers, bounds):
    assert params._envelope(numbers) == pytest.approx(bounds)
