"""Planning builds each point of the grid once and gives its seeds that config with their own
seed: every run is still exactly the config built alone from the profile and all its overrides."""
from __future__ import annotations

import pytest

from core.profiles import profile_config
from studies import plan, spec
from studies.spec import SpecError


def test_every_run_is_the_config_its_overrides_build_alone(write_study):
    path = write_study("grid", axes=[{"name": "m", "key": "loss.center_momentum", "values": [0, 0.9]},
                                     {"name": "t", "key": "loss.teacher_temp", "values": [0.04, "0.04->0.07"]}],
                       seeds=[0, 7, 3])
    study = spec.load(str(path))
    runs = plan.expand(study, "tiny", {"epochs": 3})
    points = [(m, t) for m in (0, 0.9) for t in (0.04, "0.04->0.07")]
    assert [run.label for run in runs] == [f"m={m} t={t} seed={s}" for m, t in points for s in (0, 7, 3)]
    for run, ((m, t), seed) in zip(runs, [(p, s) for p in points for s in (0, 7, 3)]):
        alone = profile_config("tiny", {**study.overrides, "epochs": 3, "loss.center_momentum": m,
                                        "loss.teacher_temp": t, "seed": seed})
        assert run.config == alone and run.seed == seed == run.config.seed
        assert run.key == plan.config_key(alone) and run.config.to_dict() == alone.to_dict()
    assert len({run.key for run in runs}) == len(runs)  # the seed is part of a run's identity


def test_a_profile_that_cannot_build_refuses_every_run_in_one_line(write_study, tmp_path):
    scale = tmp_path / "broken.toml"
    scale.write_text('extends = "tiny"\nepochs = 0\n')
    study = spec.load(str(write_study("grid", axes=[{"name": "m", "key": "loss.center_momentum",
                                                     "values": [0.0, 0.9]}], seeds=2)))
    with pytest.raises(SpecError) as refused:
        plan.expand(study, str(scale))
    assert refused.value.lines == [f"{study.path}: every run on profile {scale}: {scale}: epochs=0 must be > 0"]
