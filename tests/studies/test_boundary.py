"""The boundary search: its declaration and refusals, the search on a synthetic monotone verdict
(no training: expected probes and brackets worked out by hand below each test), and a real
search on micro whose boundary a grid found first."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w

from core.collapse import NONE
from studies import boundary, plan, spec
from studies.axes import Boundary
from studies.boundary import COLLAPSED, FAILED, HEALTHY, NO_VERDICT, NOT_LAUNCHED, UNFINISHED
from studies.run import main
from tests.helpers import MICRO_SET, by_label

TAU = {"name": "tau_t", "key": "loss.teacher_temp"}


def declared(low, high, tolerance, budget, scale="linear", **names) -> Boundary:
    return Boundary(names.get("name", "tau_t"), names.get("key", "loss.teacher_temp"), low, high, scale, tolerance,
                    budget)


def drive(searched: Boundary, collapses, parallel: int, failing=()) -> tuple[list[tuple], boundary.State]:
    """Run the search to its end on a verdict function: every round's probes, and the final state."""
    found: dict[float, str] = {}
    rounds = []
    while probes := boundary.next_probes(searched, found, parallel):
        rounds.append(probes)
        found.update({v: FAILED if v in failing else COLLAPSED if collapses(v) else HEALTHY for v in probes})
    return rounds, boundary.state(searched, found)


# -- the search on a synthetic verdict --------------------------------------------------------------
def test_k_section_converges_to_the_threshold_within_the_tolerance():
    # [0.18, 0.42] in thirds (2 at once): 0.26, 0.34; [0.26, 0.34] in thirds: 0.28667, 0.31333,
    # rounded to 0.001 (a tenth of their 0.0267 gaps rounded down to a power of ten)
    rounds, final = drive(declared(0.18, 0.42, 0.03, 6), lambda v: v > 0.2725, parallel=2)
    assert rounds == [(0.18, 0.42), (0.26, 0.34), (0.287, 0.313)]
    assert final.bracket == (0.26, 0.287) and final.stop == boundary.TOLERANCE and final.flips == 1
    assert "bracket [0.26, 0.287], 0.027 wide" in final.why


def test_the_last_round_runs_only_the_probes_the_tolerance_still_needs():
    # [0.0667, 0.0733] is 0.0066 wide: one probe (0.07) halves it to 0.0033 <= 0.005; a second would not be needed
    rounds, final = drive(declared(0.04, 0.1, 0.005, 8), lambda v: v > 0.071, parallel=2)
    assert rounds == [(0.04, 0.1), (0.06, 0.08), (0.0667, 0.0733), (0.07,)]
    assert final.bracket == (0.07, 0.0733) and final.stop == boundary.TOLERANCE


def test_the_budget_is_respected():
    # 5 probes: the ends, 0.06 and 0.08, then the one left bisects [0.06, 0.08]
    rounds, final = drive(declared(0.04, 0.1, 0.005, 5), lambda v: v > 0.071, parallel=2)
    assert rounds == [(0.04, 0.1), (0.06, 0.08), (0.07,)]
    assert final.bracket == (0.07, 0.08) and final.stop == boundary.BUDGET
    assert "budget spent (5 of 5 probes spent)" in final.why


def test_bisection_on_a_log_scale_takes_geometric_midpoints():
    # positions -2..0 (decades): 10^-1 = 0.1; 10^-0.5 = 0.3162 -> 0.32 (gaps 0.216: step 0.01);
    # sqrt(0.1 * 0.32) = 0.1789 -> 0.179; log10(0.32 / 0.179) = 0.252 decades <= 0.3
    rounds, final = drive(declared(0.01, 1.0, 0.3, 10, "log"), lambda v: v > 0.3, parallel=1)
    assert rounds == [(0.01, 1.0), (0.1,), (0.32,), (0.179,)]
    assert final.bracket == (0.179, 0.32) and final.stop == boundary.TOLERANCE


def test_a_momentum_is_bisected_in_decades_of_one_minus_it():
    # 1 - m from 10^-2 to 10^-4: 0.999 halfway; then 1 - 10^-3.5 = 0.999684 -> 0.99968 (its gap to 0.9999 is
    # 0.000216: step 1e-5); -log10(0.00032) - 3 = 0.495 decades <= 0.5
    rounds, final = drive(declared(0.99, 0.9999, 0.5, 6, "log(1-x)", name="m", key="loss.center_momentum"),
                          lambda v: v > 0.9995, parallel=1)
    assert rounds == [(0.99, 0.9999), (0.999,), (0.99968,)]
    assert final.bracket == (0.999, 0.99968)


def test_ends_that_agree_mean_no_boundary_in_range_and_nothing_more_is_run():
    rounds, final = drive(declared(0.04, 0.1, 0.005, 8), lambda v: False, parallel=4)
    assert rounds == [(0.04, 0.1)]
    assert final.stop == boundary.NO_BOUNDARY and final.bracket is None
    assert final.why == "no boundary in [0.04, 0.1]: both ends are healthy"


def test_a_boundary_from_collapsed_to_healthy_is_found_the_same_way():
    # tau_t near 0 collapses to one dimension: collapsed below, healthy above
    rounds, final = drive(declared(0.18, 0.42, 0.03, 6), lambda v: v < 0.3, parallel=2)
    assert rounds == [(0.18, 0.42), (0.26, 0.34), (0.287, 0.313)]
    assert final.bracket == (0.287, 0.313)


def test_a_failed_probe_in_the_bracket_holds_the_search_until_it_is_rerun():
    searched = declared(0.18, 0.42, 0.03, 6)
    found = {0.18: HEALTHY, 0.42: COLLAPSED, 0.26: FAILED, 0.34: COLLAPSED}
    held = boundary.state(searched, found)
    assert held.held == (0.26,) and held.stop is None and "--retry-failed" in held.why
    assert boundary.next_probes(searched, found, 2) == ()
    found[0.26] = HEALTHY  # rerun: the search goes on as if it had never failed
    assert boundary.next_probes(searched, found, 2) == (0.287, 0.313)


def test_a_failed_probe_outside_the_bracket_is_passed_by():
    # 0.26 collapsed: the bracket is [0.18, 0.26], in thirds 0.20667 and 0.23333
    found = {0.18: HEALTHY, 0.42: COLLAPSED, 0.26: COLLAPSED, 0.34: FAILED}
    assert boundary.next_probes(declared(0.18, 0.42, 0.03, 8), found, 2) == (0.207, 0.233)


def test_a_failed_end_is_rerun_and_an_end_without_a_verdict_stops_the_search():
    searched = declared(0.04, 0.1, 0.005, 8)
    failed = boundary.state(searched, {0.04: HEALTHY, 0.1: FAILED})
    assert failed.held == (0.1,) and failed.stop is None
    assert failed.why == "the end 0.1 failed: --retry-failed reruns it"
    ends = {0.04: NO_VERDICT, 0.1: COLLAPSED}
    assert boundary.state(searched, ends).stop == boundary.NO_END_VERDICT
    assert boundary.next_probes(searched, ends, 2) == ()


def test_a_probe_without_a_verdict_is_gone_around():
    # 0.26 gave none: the gaps either side of it, [0.18, 0.26] and [0.26, 0.34], get a midpoint each
    found = {0.18: HEALTHY, 0.42: COLLAPSED, 0.26: NO_VERDICT, 0.34: COLLAPSED}
    searched = declared(0.18, 0.42, 0.03, 8)
    assert boundary.state(searched, found).bracket == (0.18, 0.34)
    assert boundary.next_probes(searched, found, 2) == (0.22, 0.3)


def test_unfinished_probes_are_waited_for():
    searched = declared(0.18, 0.42, 0.03, 6)
    found = {0.18: HEALTHY, 0.42: COLLAPSED, 0.26: UNFINISHED, 0.34: COLLAPSED}
    assert boundary.state(searched, found).why == "waiting for probe 0.26 to finish"
    assert boundary.next_probes(searched, found, 2) == ()


def test_the_next_probes_depend_on_the_probes_alone():
    # a rerun (a killed launcher, a later command) reads the same probes in another order: the same next round
    searched = declared(0.18, 0.42, 0.03, 6)
    once = {0.18: HEALTHY, 0.42: COLLAPSED, 0.26: HEALTHY, 0.34: COLLAPSED}
    again = dict(reversed(list(once.items())))
    assert boundary.next_probes(searched, once, 2) == boundary.next_probes(searched, again, 2) == (0.287, 0.313)


def test_a_verdict_that_is_not_monotone_brackets_the_flip_nearest_the_healthy_end():
    found = {0.0: HEALTHY, 0.2: HEALTHY, 0.4: COLLAPSED, 0.6: HEALTHY, 1.0: COLLAPSED}
    now = boundary.state(declared(0.0, 1.0, 0.05, 20), found)
    assert now.bracket == (0.2, 0.4) and now.flips == 3


def test_probes_outside_the_declared_range_are_left_out():
    # an earlier declaration probed 0.5: it neither counts as a probe nor as an end
    found = {0.5: COLLAPSED, 0.04: HEALTHY}
    assert boundary.next_probes(declared(0.04, 0.1, 0.005, 3), found, 2) == (0.1,)


def test_a_probe_verdict_is_the_majority_of_its_seeds():
    def of(*runs):
        return boundary.verdicts((0.1, state, mode) for state, mode in runs)[0.1]
    assert of(("done", NONE), ("done", "uniform"), ("done", "one dimension")) == COLLAPSED
    assert of(("done", NONE), ("done", NONE), ("done", "uniform")) == HEALTHY
    assert of(("done", NONE), ("done", "unknown"), ("done", "uniform")) == NO_VERDICT  # unknown counts for neither
    assert of(("done", "unknown"),) == NO_VERDICT
    assert of(("done", NONE), ("failed", None), ("done", NONE)) == FAILED
    assert of(("done", NONE), ("pending", None), ("missing", None)) == UNFINISHED
    assert of(("missing", None), ("missing", None)) == NOT_LAUNCHED


def test_probes_not_launched_hold_the_search_and_say_so_not_that_they_are_waited_for():
    searched = declared(0.18, 0.42, 0.03, 6)
    now = boundary.state(searched, {0.18: NOT_LAUNCHED, 0.42: NOT_LAUNCHED})
    assert now.why == "probes 0.18, 0.42 not launched yet: the study's command launches them"
    assert now.held == (0.18, 0.42)
    assert boundary.next_probes(searched, {0.18: NOT_LAUNCHED, 0.42: NOT_LAUNCHED}, 2) == ()
    # a probe a launch left out (sbatch refused it) holds the search the same way
    found = {0.18: HEALTHY, 0.42: COLLAPSED, 0.26: NOT_LAUNCHED, 0.34: COLLAPSED}
    assert boundary.state(searched, found).why == "probe 0.26 not launched yet: the study's command launches it"
    assert boundary.next_probes(searched, found, 2) == ()


# -- the declaration -------------------------------------------------------------------------------
def boundary_file(tmp_path: Path, name: str = "tau_boundary", overrides: dict | None = None, **top) -> Path:
    declaration = {**TAU, "low": 0.18, "high": 0.42, "tolerance": 0.03, "budget": 6, **(overrides or {})}
    study = {"description": f"test boundary {name}", "set": {k: v for k, v in MICRO_SET.items()},
             "boundary": {k: v for k, v in declaration.items() if v is not None}, **top}
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(study))
    return path


def test_a_boundary_study_starts_as_the_study_of_its_two_ends(tmp_path):
    study = spec.load(str(boundary_file(tmp_path, overrides={"scale": "log"})))
    assert study.boundary == Boundary("tau_t", "loss.teacher_temp", 0.18, 0.42, "log", 0.03, 6)
    runs = plan.expand(study, "tiny")
    assert [(r.label, r.config.loss.teacher_temp) for r in runs] == [("tau_t=0.18 seed=0", 0.18),
                                                                      ("tau_t=0.42 seed=0", 0.42)]
    grown = boundary.study_with_probes(study, [0.3, 0.18, 0.42, 0.3])
    assert [v.label for v in grown.axes[0].values] == ["0.18", "0.3", "0.42"]


@pytest.mark.parametrize("overrides, top, expected", [
    ({"scale": "cubic"}, {}, "boundary.scale: unknown scale 'cubic'; choose one of 'linear', 'log', 'log(1-x)'"),
    ({"low": 0.5}, {}, "boundary.high: 0.42 is not above boundary.low = 0.5; give low < high"),
    ({"low": 0, "scale": "log"}, {}, "boundary.low: 0 has no logarithm; scale = \"log\" needs low > 0"),
    ({"key": "loss.center_momentum", "high": 1.0, "scale": "log(1-x)"}, {},
     "boundary.high: 1 leaves no 1 - value to take the log of"),
    ({"tolerance": 0.3}, {}, "boundary.tolerance: 0.3 is not narrower than [low, high] itself (0.24)"),
    ({"tolerance": 0}, {}, "boundary.tolerance: 0 is not a width; give a positive one"),
    ({"budget": 2}, {}, "boundary.budget: 2 probes leave none between the ends"),
    ({"budget": None}, {}, "boundary.budget: missing; give the most probes to run"),
    ({"key": "epochs"}, {}, "boundary.key: epochs is a setting of type int, not a real number"),
    ({"key": "loss.temp"}, {}, "boundary.key: unknown config key 'loss.temp'"),
    ({"low": "0.18"}, {}, "boundary.low: has the wrong type (str, '0.18'); give the lowest value to probe as a number"),
    ({"step": 0.01}, {}, "boundary.step: unknown key"),
    ({}, {"seeds": 2}, "seeds: 2 seeds can tie on a probe's verdict"),
    ({}, {"axes": [{"name": "m", "key": "loss.center_momentum", "values": [0.9]}]},
     "axes: a boundary study searches its [boundary] setting alone"),
])
def test_a_bad_declaration_is_one_line_naming_the_key_and_the_fix(tmp_path, capsys, overrides, top, expected):
    path = boundary_file(tmp_path, overrides=overrides, **top)
    results = tmp_path / "results"
    assert main([str(path), "--dry-run", "--results", str(results)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: ") and expected in lines[0]
    assert not results.exists()


def test_status_before_any_launch_says_the_ends_are_not_launched(capsys, tmp_path):
    assert main(["teacher_temp_boundary", "--status", "--results", str(tmp_path / "r")]) == 0
    assert "boundary: probes 0.04, 0.1 not launched yet: the study's command launches them" in capsys.readouterr().out
    assert not (tmp_path / "r").exists()  # --status reads; it creates nothing


def test_the_shipped_boundary_study_dry_runs_its_two_ends_first(capsys, tmp_path):
    assert main(["teacher_temp_boundary", "--dry-run", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "2 runs:" in out and "tau_t=0.04 seed=0" in out and "loss.teacher_temp 0.04 -> 0.1" in out
    assert not (tmp_path / "r").exists()


# -- a real search on micro -------------------------------------------------------------------------
# A grid of micro runs (SETTINGS below: micro, 3 epochs, one seed, no linear probe) on tau_t found the
# verdict flipping between 0.26 (none) and 0.3 (uniform): final h(P_t) / ln K was 0.970, 0.978, 0.983,
# 0.988, 0.991, 0.994 at 0.22, 0.26, 0.3, 0.35, 0.4, 0.5, and the rule's uniform targets start at 0.98
# (KL stayed 0.52-0.55). Measured with a study file of SETTINGS and that one axis:
#   python -m studies.run grid.toml --max-parallel 2
GRID_FLIP = (0.26, 0.3)
SETTINGS = {**MICRO_SET, "eval.linear_probe": False}


def test_a_micro_search_brackets_the_flip_a_grid_found_and_resumes_from_its_ledger(tmp_path, capsys):
    """``python -m studies.run`` on a boundary study: stopped by its budget, then resumed from
    its ledger by a rerun with a larger one, as an uninterrupted search would have gone on."""
    results = tmp_path / "results"
    argv = ["--results", str(results), "--max-parallel", "2"]
    assert main([str(boundary_file(tmp_path, "tau_micro", {"budget": 4}, set=SETTINGS)), *argv]) == 0
    out = capsys.readouterr().out
    assert "tau_micro boundary: probing the ends first; next: 0.18 and 0.42" in out
    assert "budget spent (4 of 4 probes spent): bracket [0.26, 0.34]" in out
    assert out.count("report: ") == 1  # once, when the search stopped, not after every round
    path = boundary_file(tmp_path, "tau_micro", {"budget": 6}, set=SETTINGS)
    assert main([str(path), *argv]) == 0
    out = capsys.readouterr().out
    assert "next: 0.287 and 0.313" in out and "tolerance reached" in out
    trials = by_label(results, "tau_micro")
    assert sorted(trials) == [f"tau_t={v} seed=0" for v in ("0.18", "0.26", "0.287", "0.313", "0.34", "0.42")]
    verdicts = {label: t[-1].user_attrs["collapse"] for label, t in trials.items()}
    healthy = [float(label.split("=")[1].split()[0]) for label, mode in verdicts.items() if mode == NONE]
    collapsed = [float(label.split("=")[1].split()[0]) for label, mode in verdicts.items() if mode == "uniform"]
    a, b = max(healthy), min(collapsed)  # the bracket: every probe below it healthy, every one above collapsed
    assert len(healthy) + len(collapsed) == 6 and max(healthy) < min(collapsed)
    assert b - a <= 0.03 + 1e-12 and GRID_FLIP[0] <= a < b <= GRID_FLIP[1]  # inside the grid's flip, narrower
    # A finished search, asked again, launches nothing and answers the same
    assert main([str(path), *argv]) == 0
    again = capsys.readouterr().out
    assert "launching" not in again and f"bracket [{a:g}, {b:g}]" in again
    assert len(by_label(results, "tau_micro")) == 6
    assert main([str(path), *argv, "--status"]) == 0
    assert f"boundary: tolerance reached: bracket [{a:g}, {b:g}]" in capsys.readouterr().out
    # study.json keeps the search as last launched (budget 6), for reports read without the study file
    recorded = json.loads((results / "study.json").read_text())["boundary"]
    assert recorded == {"name": "tau_t", "key": "loss.teacher_temp", "low": 0.18, "high": 0.42, "scale": "linear",
                        "tolerance": 0.03, "budget": 6}
