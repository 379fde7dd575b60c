"""What one run asks the scheduler for: the ``[resources]`` of its profile's file
(``core.profiles``), a study's ``[profiles.<profile>.resources]`` on top, and the command line's
``--partition``.

The annotations of ``Resources`` are the type table: each value is checked by ``core.typed``'s
``coerce``, as config values are (whole numbers where ints are expected, finite numbers, no
booleans for numbers). ``core.typed.build`` stops at the first problem, while a study reports
all of its problems in one round, so each key is checked on its own and every problem is kept,
named by its key, with the fix.

Every knob a cluster user sets in a hand-written sbatch script has a key here, in submitit's
names where submitit has one (``sbatch.slurm_parameters`` passes them through); ``sbatch`` takes
any further ``#SBATCH`` line, so no cluster needs a change of code.
"""
from __future__ import annotations

import dataclasses
import typing
from collections import abc
from dataclasses import dataclass, field
from typing import Any, Mapping

from core.typed import ConfigError, coerce

# sbatch options the scheduler must get from a key of ``Resources`` (or from submitit, for its logs),
# never from the free ``sbatch`` table: two sources of one option would disagree.
_OWN_FLAGS = {"time": "time_min", "nodes": "nodes", "ntasks-per-node": "tasks_per_node",
              "cpus-per-task": "cpus_per_task", "mem": "mem_gb", "gpus-per-node": "gpus_per_node",
              "gres": "gres", "partition": "partition", "account": "account", "qos": "qos",
              "constraint": "constraint", "exclusive": "exclusive", "signal": "signal_delay_s",
              "array": "array_parallelism"}
_SUBMITIT_FLAGS = ("job-name", "output", "error", "open-mode", "wckey")
_MINIMUM_ZERO = ("gpus_per_node", "signal_delay_s", "max_timeouts")  # other numbers start at 1


@dataclass(frozen=True)
class Resources:
    """One run's request to the scheduler. A run is one DDP job of ``nodes`` x ``tasks`` processes."""

    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None  # None: one per GPU, or one on CPU (see ``tasks``)
    cpus_per_task: int = 2
    mem_gb: float = 8
    time_min: int = 60
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclusive: bool = False
    gres: str | None = None  # e.g. "gpu:a100:8": asks for the GPUs itself, in place of --gpus-per-node
    array_parallelism: int = 4
    signal_delay_s: int = 60
    max_timeouts: int = 3
    sbatch: Mapping[str, str | int | float | bool] = field(default_factory=dict)  # further #SBATCH lines
    setup: tuple[str, ...] = ()  # shell lines run before the job: module load, conda activate
    srun_args: tuple[str, ...] = ()  # one argument each, e.g. ["--cpu-bind=none"]

    @property
    def tasks(self) -> int:
        """Processes per node: one per GPU (core.distributed gives each its own), else one, unless
        ``tasks_per_node`` says otherwise (several gloo processes on CPU)."""
        return self.tasks_per_node or max(1, self.gpus_per_node)

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks

    @property
    def gres_requests_gpus(self) -> bool:
        return self.gres is not None and _gres_gpus(self.gres) is not None


KEYS = tuple(f.name for f in dataclasses.fields(Resources))
_HINTS = typing.get_type_hints(Resources)


def update(base: Resources, raw: Mapping[str, Any]) -> tuple[Resources, list[tuple[str, str]]]:
    """``base`` with the values of ``raw`` (keys of ``KEYS``, from a TOML table or the command
    line), and one ``(key, message)`` per problem; a key with a problem keeps its value from
    ``base``."""
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            checked = _coerce(value, _HINTS[key], key)
        except ConfigError:
            problems.append((key, f"has the wrong type ({type(value).__name__}, {value!r}); {_fix(_HINTS[key])}"))
            continue
        minimum = 0 if key in _MINIMUM_ZERO else 1
        if isinstance(checked, (int, float)) and not isinstance(checked, bool) and checked < minimum:
            problems.append((key, f"{value} is too small; use at least {minimum}"))
            continue
        values[key] = checked
    merged = dataclasses.replace(base, **values)
    problems += _conflicts(merged)
    return merged, problems


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``core.typed.coerce``, plus the two shapes resources have and configs do not: a list of
    strings (``tuple[str, ...]``) and a table of sbatch options."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list")
        return tuple(coerce(item, str, key) for item in value)
    if origin is abc.Mapping:
        if not isinstance(value, Mapping) or not all(
                isinstance(v, (str, int, float)) and v is not False for v in value.values()):
            raise ConfigError(f"{key} must be a table of strings, numbers or true")
        return dict(value)
    return coerce(value, hint, key)


def _fix(hint: Any) -> str:
    """How to write a value of this annotation, for the one-line error."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        return 'write a list of strings, e.g. ["module load cuda"]'
    if origin is abc.Mapping:
        return 'write a table of sbatch options, e.g. { mail-type = "END" } (true for a bare flag)'
    base = next(a for a in typing.get_args(hint) or (hint,) if a is not type(None))
    return {bool: "write true or false", int: "write a whole number", float: "write a number",
            str: "write a string in quotes"}[base]


def _conflicts(r: Resources) -> list[tuple[str, str]]:
    """What no single key shows wrong: keys that contradict each other or what the scheduler
    gets from another key."""
    problems = []
    if r.signal_delay_s >= r.time_min * 60:
        problems.append(("signal_delay_s", f"{r.signal_delay_s} s is not shorter than time_min = "
                                           f"{r.time_min} min; lower it"))
    if r.gpus_per_node and r.tasks_per_node not in (None, r.gpus_per_node):
        problems.append(("tasks_per_node", f"{r.tasks_per_node} tasks for {r.gpus_per_node} GPUs per node: a "
                                           "run trains one DDP task per GPU; leave tasks_per_node out"))
    if r.gres is not None:
        gpus = _gres_gpus(r.gres)
        if gpus is not None and gpus != r.gpus_per_node:
            problems.append(("gres", f"{r.gres!r} asks for {gpus} GPU(s) per node but gpus_per_node = "
                                     f"{r.gpus_per_node}; make them equal (one DDP task per GPU)"))
    for name in r.sbatch:
        flag = name.replace("_", "-")  # submitit writes mail_type as --mail-type
        if flag.startswith("-"):
            problems.append((f"sbatch.{name}", f"write the option without its dashes: {flag.lstrip('-')!r}"))
        elif flag in _OWN_FLAGS:
            problems.append((f"sbatch.{name}", f"--{flag} comes from the key {_OWN_FLAGS[flag]}; set that instead"))
        elif flag in _SUBMITIT_FLAGS:
            problems.append((f"sbatch.{name}", f"--{flag} is set by submitit (logs, job name); leave it out"))
    return problems


def _gres_gpus(gres: str) -> int | None:
    """GPUs per node a --gres value asks for ("gpu:a100:8" -> 8, "gpu" -> 1), None if none."""
    for entry in gres.split(","):
        name, *rest = entry.strip().split(":")
        if name == "gpu":
            return int(rest[-1]) if rest and rest[-1].isdigit() else 1
    return None
