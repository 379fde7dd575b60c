"""The numbers a trained network's k-NN is read against: the same k-NN on a randomly initialised
network of the same shape and on raw pixels (``core.baselines``).

Both depend only on the data, the k-NN's settings, the backbone's shape, the precision features
are extracted under and the seed (0, as ``python -m core.baselines``): ``key_config``. They are
measured once per distinct such config among a study's runs, when a report is first built, and
kept as ``<results>/baselines/<digest>.json``, so a rebuild never measures again. On tiny one
costs about a minute of CPU; a config that cannot be measured (its data missing, a config an
older version recorded that no longer loads) is noted in the report, not cached, and tried again
by the next build.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from core.config import ConfigError
from core.typed import nest
from core.profiles import profile_config
from reports.labels import config_of
from reports.load import StudyResults
from studies.layout import Layout

# What a baseline's numbers depend on: sections by prefix, single keys by name, less what cannot
# change them (the images pre-trained on, which the k-NN's memory does not draw from; loader
# workers; how often a run evaluates; the scoring chunk; the student's drop-path).
PREFIXES = ("data.", "eval.", "backbone.")
SINGLE = ("crops.global_size", "precision")  # the k-NN's input size; autocast of the extraction
IGNORED = ("data.train_subset", "data.num_workers", "eval.every_epochs", "eval.chunk_size", "backbone.drop_path_rate")
KINDS = {"random_init": "a randomly initialised network", "raw_pixels": "raw pixels"}


@dataclass(frozen=True)
class Reference:
    """One config's two baselines: kind ("random_init", "raw_pixels") -> {"top1", "top5"}."""

    digest: str
    numbers: Mapping[str, Mapping[str, float]]

    def top1(self, kind: str) -> float:
        return float(self.numbers[kind]["top1"])


@dataclass(frozen=True)
class References:
    """Setting -> its runs' reference (None: no run started, or not measured); and setting -> why
    its config could not be measured."""

    by_setting: Mapping[str, Reference | None]
    problems: Mapping[str, str]

    @property
    def distinct(self) -> list[Reference]:
        """The references in table order, each once."""
        found = {r.digest: r for r in self.by_setting.values() if r is not None}
        return list(found.values())

    def settings_of(self, reference: Reference) -> list[str]:
        return [s for s, r in self.by_setting.items() if r is not None and r.digest == reference.digest]


def key_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run's flat config its baselines depend on."""
    return {k: v for k, v in sorted(config.items())
            if (k.startswith(PREFIXES) or k in SINGLE) and k not in IGNORED}


def digest(keys: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


def measure(config: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``core.baselines.baselines`` on a flat config; torch is imported here, only when a
    baseline is really measured (a launcher that only reads cached ones stays light)."""
    from core.baselines import baselines
    from core.config import DINOConfig

    return baselines(DINOConfig.from_dict(nest(config)))


def command(profile: str, keys: Mapping[str, Any]) -> str:
    """The ``python -m core.baselines`` line that measures these numbers again."""
    try:
        base = profile_config(profile).flat()
    except ConfigError:
        base = {}
    sets = [f"--set {k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in keys.items()
            if base.get(k) != v]
    return " ".join(["python -m core.baselines", f"--profile {profile}", *sets])


def references(results: StudyResults, compute: bool = True) -> References:
    """Each setting's reference, from the cache, measured (``compute``) where missing."""
    folder = Layout(results.results_dir).baselines
    by_digest: dict[str, Reference | None] = {}
    problems: dict[str, str] = {}  # digest -> why
    by_setting: dict[str, Reference | None] = {}
    failed: dict[str, str] = {}  # setting -> why
    for setting in results.settings:
        config = config_of(results, setting)
        name = digest(key_config(config)) if config else None
        if name is not None and name not in by_digest:
            by_digest[name] = _cached(folder / f"{name}.json", name)
            if by_digest[name] is None and compute:
                try:
                    by_digest[name] = _measure_and_keep(folder / f"{name}.json", name, {**config, "seed": 0},
                                                        results.plan["profile"])
                except Exception as error:  # noted in the report, and measured again by the next build
                    problems[name] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
        by_setting[setting] = by_digest.get(name) if name else None
        if name in problems:
            failed[setting] = problems[name]
    return References(by_setting, failed)


def _cached(path: Path, name: str) -> Reference | None:
    try:
        data = json.loads(path.read_text())
        return Reference(name, {kind: data[kind] for kind in KINDS})
    except (OSError, ValueError, KeyError, TypeError):  # not measured yet, or a file cut short
        return None


def _measure_and_keep(path: Path, name: str, config: dict[str, Any], profile: str) -> Reference:
    keys = key_config(config)
    started = time.time()
    numbers = measure(config)
    record = {**{kind: numbers[kind] for kind in KINDS}, "config": keys, "command": command(profile, keys),
              "seconds": round(time.time() - started, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")  # a concurrent build reads it whole
    partial.write_text(json.dumps(record, indent=2))
    partial.replace(path)
    return Reference(name, {kind: numbers[kind] for kind in KINDS})


def notes(found: References, names: Mapping[str, str]) -> list[str]:
    """The references in sentences, for the table's notes: one per distinct config (naming its
    settings where they differ), one per reason a config could not be measured."""
    distinct = found.distinct
    sentences = []
    for reference in distinct:
        which = "" if len(distinct) == 1 else " for " + ", ".join(names[s] for s in found.settings_of(reference))
        sentences.append(f"References{which} (the same k-NN, seed 0): {KINDS['random_init']} of the same shape "
                         f"{reference.top1('random_init'):.2f} % top-1, {KINDS['raw_pixels']} "
                         f"{reference.top1('raw_pixels'):.2f} %.")
    reasons: dict[str, list[str]] = {}
    for setting, why in found.problems.items():
        reasons.setdefault(why, []).append(names[setting])
    sentences += [f"No reference for {', '.join(settings)}: {why}." for why, settings in reasons.items()]
    return sentences
