"""A study's axes as optuna params of its trials, for optuna-dashboard's slice, parallel-coordinate
and importance views.

The ledger creates trials, it never samples them, so a param only has to describe the point a run
is and keep describing it as the study grows. Optuna's rules decide the shape:

* ``optuna.distributions.check_distribution_compatibility`` refuses, for a param name already in
  the study, another distribution class, another ``log`` flag, or categorical choices that are not
  the same; the importance evaluators see trials whose distributions differ as separate regimes
  (PED-ANOVA) or drop the param (fANOVA and mean decrease impurity take the intersection search
  space). So a distribution should stay the same when a study gains a value.
* The class follows the config key's declared type, never the values written: ``epochs`` is an
  int distribution and ``loss.center_momentum`` a float one even when written ``0``, so a
  study that gains ``0.5`` or ``300`` keeps its class. An axis is categorical (by label, with
  its declared labels as choices) when a value is not a plain number of its key: strings, bools,
  mixed values such as ``0.04`` beside ``"0.04->0.07"``, and tables that ``set`` several keys.
* Bounds are fixed by the values' order of magnitude, ``[0 or -10^a, 10^b]``, and linear. Wide
  ranges such as +-1e9 would never need to change, but PED-ANOVA (optuna's default evaluator)
  counts values on a 50-step grid of ``[low, high]``: every value of a sweep would fall into one
  cell, and every axis would look unimportant. A log scale would resolve ``0.99`` from ``0.999``
  but cannot hold 0, which these ablations use as "off" (``m = 0``, ``tau_t = 0``, no drop path).
* ``settle`` keeps the distribution the ledger already holds for a param as long as the new value
  fits it, and only then widens it (bounds to the next power of ten, or the choices with the
  new labels appended), so a study that gains a value inside its order of magnitude stays one
  regime, and one that outgrows it changes once. Optuna's check above would still refuse the
  widened distribution in ``Trial.suggest_*`` and ``set_trial_param``; the ledger gives the params
  with the trial it creates (``storage.create_new_trial``'s template), which optuna stores
  without that check, so an existing study's ledger always takes a new value.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping

from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)

from core import typed
from core.config import DINOConfig
from studies.plan import Run
from studies.spec import Axis, Study

Param = tuple[Any, BaseDistribution]  # the value in the distribution's own terms, and the distribution


def declared(study: Study, profile: str, run: Run) -> dict[str, Param]:
    """Axis name -> (value, distribution) of ``run``, from the axes' values on ``profile`` alone."""
    return {axis.name: _param(axis, axis.values_for(profile), run) for axis in study.axes}


def settle(params: Mapping[str, Param], held: Mapping[str, BaseDistribution]) -> dict[str, Param]:
    """``params`` with each distribution replaced by the one the ledger ``held`` for that name
    when it holds the value, else by the widest of both (see the module's notes)."""
    settled = {}
    for name, (value, declared_) in params.items():
        before = held.get(name)
        if before is None or type(before) is not type(declared_):
            settled[name] = (value, declared_)
        elif _holds(before, value):
            settled[name] = (value, before)
        else:
            settled[name] = (value, _widened(before, declared_))
    return settled


def _param(axis: Axis, values: tuple, run: Run) -> Param:
    kind = typed.field_type(DINOConfig, axis.key) if axis.key else None
    numbers = [_number(v.overrides, axis.key) for v in values]
    if kind not in (int, float, Any) or any(n is None for n in numbers):
        labels = [v.label for v in values]
        return run.axes[axis.name], CategoricalDistribution(labels)
    cast = int if kind is int else float
    low, high = _envelope(numbers)
    value = cast(functools.reduce(getattr, axis.key.split("."), run.config))  # the run's own value
    return value, (IntDistribution(int(low), int(high)) if cast is int else FloatDistribution(low, high))


def _number(overrides: Mapping[str, Any], key: str | None) -> float | None:
    """The value's number if it sets exactly its axis' key to a plain number, else None."""
    if key is None or set(overrides) != {key}:
        return None
    value = overrides[key]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _envelope(numbers: list[float]) -> tuple[float, float]:
    """``[0 or -10^a, 10^b or 0]``: the smallest range with powers of ten as ends (or 0) that
    holds every number and 0."""
    low, high = min(numbers), max(numbers)
    return (-_decade(-low) if low < 0 else 0.0), (_decade(high) if high > 0 else 0.0)


def _decade(x: float) -> float:
    """The smallest power of ten >= x > 0 (exact for x itself a power of ten)."""
    k = math.ceil(math.log10(x))
    return 10.0 ** (k - 1) if 10.0 ** (k - 1) >= x else 10.0 ** k


def _holds(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    return distribution.low <= value <= distribution.high


def _widened(before: BaseDistribution, declared_: BaseDistribution) -> BaseDistribution:
    if isinstance(before, CategoricalDistribution):
        assert isinstance(declared_, CategoricalDistribution)
        return CategoricalDistribution([*before.choices, *(c for c in declared_.choices if c not in before.choices)])
    assert isinstance(declared_, (FloatDistribution, IntDistribution))
    return type(declared_)(min(before.low, declared_.low), max(before.high, declared_.high))
