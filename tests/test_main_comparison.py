"""A config's [main_comparison]: the sequential looks decide it alone, give seeds to its two cells
only, and the report reads it at the look it stopped with that look's repeated interval, while
every other table reads the planned seeds.

The records here are written as a finished run writes them, with planted test predictions (the
arm's worst skin-type group made easier), so each look's decision is known without training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dermsynth import files
from dermsynth.analysis.gap_outcomes import gap_test
from dermsynth.analysis.main_comparison import MAIN_FAMILY, main_cells, main_key, main_row
from dermsynth.analysis.remedies import gap_comparisons, gap_summary
from dermsynth.analysis.sequential import LookView, SequentialDesign, planned_seeds_only, report_view
from dermsynth.analysis.sequential_study import _record, take_look
from dermsynth.errors import ConfigError
from dermsynth.experiments.results import load_records, results_table
from dermsynth.experiments.sequential_state import (
    LOOKS_AT_MAIN,
    cell_key,
    load_state,
    save_state,
    start_or_resume,
    with_added_seeds,
)
from dermsynth.experiments.spec import cells, validate_experiment

CLASSES = ["a", "b", "c"]
GROUPS = np.array(["I-II", "III-IV", "V-VI"] * 30, dtype=object)  # 90 test images, 30 per group
LABELS = np.array([CLASSES[i % 3] for i in range(90)])
MAIN = {"arm": {"synthetic_per_real": 1}, "outcome": "worst_group_accuracy"}


def study_spec(tmp_path, seeds=4) -> dict:
    return {"name": "main", "seeds": seeds,
            "base": {"dataset": "demo", "root": str(tmp_path / "demo"), "n_real": 4, "demo_n_per_class": 20,
                     "n_test": 5, "n_val": 4,
                     "synthetic_store": str(tmp_path / "store")},
            "grid": {"synthetic_per_real": [0, 1]}, "variants": [{}, {"sampling": "balanced"}],
            "main_comparison": MAIN}


def record(run, correct: np.ndarray) -> dict:
    predicted = np.where(correct, LABELS, np.roll(LABELS, 1))
    acc = {c: float(correct[c == LABELS].mean()) for c in CLASSES}
    return {"run_id": run.run_id(), "spec": run.model_dump(mode="json"), "classes": CLASSES,
            "metrics": {"accuracy": float(correct.mean()), "balanced_accuracy": float(np.mean(list(acc.values()))),
                        "top3_accuracy": 1.0, "n_test": len(LABELS), "per_class_accuracy": acc,
                        "per_skin_group_accuracy": {g: float(correct[g == GROUPS].mean()) for g in set(GROUPS)}},
            "n_train": 12, "n_train_synthetic": 12 * run.synthetic_per_real,
            "fit": {"epochs_run": 1, "images_per_second": 1.0}, "wall_seconds": 1.0,
            "predictions": {"id": [f"t{i:03d}" for i in range(90)], "label": LABELS.tolist(),
                            "predicted": predicted.tolist(), "skin_group": GROUPS.tolist(),
                            "probabilities": [[1 / 3] * 3] * 90}}


def planted(run, gain: float) -> np.ndarray:
    """A run's correct test images: 70 % right, the V-VI group 40 %, raised by ``gain`` in a
    synthetic arm; a seed moves every arm alike (paired), and each run draws its own noise."""
    seed_shift = np.random.default_rng(run.seed).normal(0, 0.05)
    rng = np.random.default_rng([run.seed, run.synthetic_per_real, run.sampling == "balanced"])
    p = np.where(GROUPS == "V-VI", 0.40 + (gain if run.synthetic_per_real else 0.0), 0.70) + seed_shift
    return rng.random(90) < p


def write_runs(out, runs, gain: float) -> None:
    for run in runs:
        files.write_json(out / "runs" / f"{run.run_id()}.json", record(run, planted(run, gain)))


def test_the_looks_decide_the_main_comparison_and_grow_its_two_cells_only(tmp_path):
    spec = validate_experiment(study_spec(tmp_path))
    out = tmp_path / "study"
    design = SequentialDesign((4, 8, 12))
    grid = cells(spec)
    grows = main_cells(grid, MAIN)
    arm_cell = {cell_key(r) for r in grid if r.synthetic_per_real == 1 and r.sampling == "uniform"}
    plain = {cell_key(r) for r in grid if r.synthetic_per_real == 0 and r.sampling == "uniform"}
    assert set(grows) == arm_cell | plain  # the remedy's cells and the other synthetic arm never grow
    wider = validate_experiment({**study_spec(tmp_path), "grid": {"synthetic_per_real": [0, 1], "n_real": [4, 8]}})
    with pytest.raises(ConfigError, match="matches 2 cells"):  # which n_real? the comparison must be one
        main_cells(cells(wider), MAIN)
    one = main_cells(cells(wider), {**MAIN, "arm": {"synthetic_per_real": 1, "n_real": 8}})
    assert {r.n_real for r in cells(wider) if cell_key(r) in one} == {8} and len(one) == 2
    state = start_or_resume(out, design.as_dict(), None, LOOKS_AT_MAIN, grows, main_key(MAIN))
    prepared = with_added_seeds(grid, spec.seed_list(), out, last_look=True)
    assert len(prepared) == len(grid) + 2 * 8  # the stages prepare the main cells for the last look only
    with pytest.raises(ConfigError, match="main comparison"):  # a config that changed what its looks decide
        start_or_resume(out, design.as_dict(), None)

    write_runs(out, grid, gain=0.2)
    decisions = take_look(spec, out, state, 0)
    assert list(decisions) == [main_key(MAIN)]  # one comparison, not the accuracy family
    d = decisions[main_key(MAIN)]
    assert d["decision"] == "continue" and d["seeds"] == 4  # O'Brien–Fleming: 4 seeds cannot decide it
    assert {d["arm"], d["reference"]} == arm_cell | plain
    state = _record(state, design, 0, decisions)
    assert state["extend"] == {d["arm"]: 8, d["reference"]: 8}
    save_state(out, state)
    with pytest.raises(ConfigError, match="outside"):  # a look may not grow a cell the stages did not prepare
        _record(state, design, 0, {"x": {**d, "decision": "continue", "arm": "not-a-main-cell"}})
    grown = with_added_seeds(grid, spec.seed_list(), out)
    assert len(grown) == len(grid) + 8 and {r.seed for r in grown} == set(range(8))

    write_runs(out, grown, gain=0.2)
    records = load_records(out)
    table = results_table(out, records)
    arm = table[(table["synthetic_per_real"] == 1) & (table["sampling"] == "uniform")]
    ref = table[(table["synthetic_per_real"] == 0) & (table["sampling"] == "uniform")]
    by_run = {r["run_id"]: r for r in records}
    expected = gap_test("worst_group_accuracy",
                        [np.array(by_run[r]["predictions"]["predicted"]) == LABELS for r in arm["run_id"]],
                        [np.array(by_run[r]["predictions"]["predicted"]) == LABELS for r in ref["run_id"]],
                        LABELS, GROUPS, 3, arm["seed"].tolist(), ref["seed"].tolist())
    second = take_look(spec, out, state, 1)[main_key(MAIN)]
    assert second["p_fixed"] == pytest.approx(expected.p_value)  # the gap test on exactly the look's 8 seeds
    assert second["decision"] == ("difference" if expected.p_value <= design.nominal()[1] else "continue")
    assert second["decision"] == "difference" and second["p_fixed"] < design.nominal()[1] / 5  # 20 points, 8 seeds
    changed = {**MAIN, "outcome": "group_gap"}  # another main comparison after a look: outcome switching
    with pytest.raises(ConfigError, match="fixed when it starts"):
        start_or_resume(out, design.as_dict(), None, LOOKS_AT_MAIN, grows, main_key(changed))
    legacy = {k: v for k, v in {**state, "looks": [{"look": 0, "decisions": decisions}]}.items() if k != "decides"}
    save_state(out, legacy)  # a record from before it named the comparison: its looks' decisions name it
    with pytest.raises(ConfigError, match="fixed when it starts"):
        start_or_resume(out, design.as_dict(), None, LOOKS_AT_MAIN, grows, main_key(changed))
    assert start_or_resume(out, design.as_dict(), None, LOOKS_AT_MAIN, grows, main_key(MAIN))["looks"]


def test_the_report_reads_the_main_comparison_at_its_look_and_the_rest_on_the_planned_seeds(tmp_path):
    spec = validate_experiment(study_spec(tmp_path))
    out = tmp_path / "study"
    design = SequentialDesign((4, 8, 12))
    grid = cells(spec)
    state = start_or_resume(out, design.as_dict(), None, LOOKS_AT_MAIN, main_cells(grid, MAIN), main_key(MAIN))
    write_runs(out, grid, gain=0.2)
    state = _record(state, design, 0, take_look(spec, out, state, 0))
    save_state(out, state)
    early = gap_comparisons(results_table(out, load_records(out)), load_records(out), MAIN,
                            view=LookView(state, spec.seed_list()))  # a report between looks
    assert "still running" in gap_summary(pd.DataFrame(), early)[0]
    write_runs(out, with_added_seeds(grid, spec.seed_list(), out), gain=0.2)
    state = _record(state, design, 1, take_look(spec, out, state, 1))
    save_state(out, state)
    # what `experiment run` writes (only now: the planted records carry no data digest to check)
    files.write_json(out / "experiment.json", {"spec": spec.model_dump(mode="json")})
    assert report_view(out) is None  # the accuracy family is not what these looks decided
    view = report_view(out, LOOKS_AT_MAIN)
    assert isinstance(view, LookView) and view.at(main_key(MAIN)) == 1

    records = load_records(out)
    every = results_table(out, records)
    fixed = planned_seeds_only(out, every)
    assert sorted(set(every["seed"])) == list(range(8)) and sorted(set(fixed["seed"])) == list(range(4))
    gaps = gap_comparisons(fixed, records, MAIN, every, view)
    main = gaps[gaps["family"] == MAIN_FAMILY].iloc[0]
    assert main["seeds"] == 8 and main["look"] == 2 and main["verdict"] == "improved"
    assert main["p_seed"] == pytest.approx(design.stagewise_p(1, float(load_state(out)["looks"][1]["decisions"]
                                                                   [main_key(MAIN)]["p_fixed"])))
    assert main["ci_level"] == pytest.approx(1 - design.nominal()[1]) and main["seed_ci_low"] > 0
    rest = gaps[gaps["family"] != MAIN_FAMILY]
    assert (rest["seeds"] == 4).all()  # every other comparison on the planned seeds, paired
    assert rest["p_equiv_bh"].notna().all()  # their own equivalence tests, not the main row's stage-wise one
    assert not ((rest["comparison"] == main["comparison"]) & (rest["outcome"] == MAIN["outcome"])).any()

    first = gap_summary(pd.DataFrame(), gaps)[0]  # the report's summary states it first, as decided
    assert first.startswith("Main comparison") and "at look 2 of 3" in first and "% repeated CI" in first
    assert "still running" not in first

    decided = load_state(out)
    at_look = decided["looks"][1]["decisions"][main_key(MAIN)]["p_fixed"]
    decided["looks"][1]["decisions"][main_key(MAIN)]["p_fixed"] = 1e-4  # as if the runs had changed since
    save_state(out, decided)
    moved = main_row(every, records, MAIN, report_view(out, LOOKS_AT_MAIN))
    assert moved["p_seed"] == pytest.approx(design.stagewise_p(1, 1e-4))  # the p the look decided on
    assert moved["p_now"] == pytest.approx(at_look)  # and what the runs give now, said beside it
    assert np.isnan(main["p_now"])  # unchanged runs: nothing to say

    fixed_row = main_row(every, records, MAIN)  # without the view: every seed, a 95 % interval
    assert fixed_row["seeds"] == 8 and "look" not in fixed_row


def test_a_sequential_table_runs_the_study_until_decided_and_changes_no_digest(tmp_path):
    from dermsynth.analysis.sequential_study import sequential_design

    plain = validate_experiment(study_spec(tmp_path))
    spec = validate_experiment({**study_spec(tmp_path), "sequential": {"max_seeds": 12, "looks": 3}})
    assert spec.digest() == plain.digest()  # the design is fixed in sequential.json, not in run ids
    assert sequential_design(plain, False, False, None, None, None) is None  # a fixed design, as before
    assert sequential_design(plain, True, False, None, None, None) == (None, 3, "obrien-fleming")
    assert sequential_design(spec, False, False, None, None, None) == (12, 3, "obrien-fleming")
    assert sequential_design(spec, False, False, 20, 5, "pocock") == (20, 5, "pocock")  # the command line wins
    assert sequential_design(spec, False, True, None, None, None) is None  # a rehearsal runs its stand-ins once
    assert sequential_design(spec, False, False, None, None, None, 0.05)[0] is None  # --target-effect sizes it
    from dermsynth.analysis.sequential_study import run_until_decided

    with pytest.raises(ConfigError, match="target-effect"):  # sized from accuracy, not the gap outcome
        run_until_decided(spec, tmp_path / "s", target_effect=0.05)
    for bad, field in (({"looks": 0}, "looks"), ({"spending": "haybittle"}, "spending"), ({"max": 4}, "max")):
        with pytest.raises(ConfigError, match=field):
            validate_experiment({**study_spec(tmp_path), "sequential": bad})
    from dermsynth.experiments.plan import plan

    rows = plan(spec).set_index("stage")
    assert rows.loc["train classifiers (sequential looks)", "tasks"] == 2 * (12 - 4)  # the main comparison's 2 cells
    family = validate_experiment({**study_spec(tmp_path), "sequential": {"max_seeds": 12}, "main_comparison": None})
    assert plan(family).set_index("stage").loc["train classifiers (sequential looks)", "tasks"] == 4 * 8
    assert "sequential looks" not in set(plan(plain)["stage"])


def test_the_sequential_gap_test_keeps_its_level_and_decides_a_narrowed_group():
    """A short run of bench/gap_test_validity.py --sequential: the main comparison's looks (4, 8
    and 12 seeds, O'Brien–Fleming) on the gap test, under the paired null and with a 15-point
    narrowing of a group 20 points behind (the bench runs the preset's design, with more studies)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from gap_test_validity import GroupShiftSimulator, skin_groups

    from dermsynth.analysis.null_simulation import Scenario, sequential_rates
    from dermsynth.analysis.verdicts import equivalence_p

    groups = skin_groups(400)

    def test(a, b, sa, sb):
        res = gap_test("worst_group_accuracy", list(a), list(b), labels, groups, 4, sa, sb, reps=30)
        return res.p_value, equivalence_p(res.difference, res.se, res.df)

    design = SequentialDesign((4, 8, 12))
    rates = {}
    for gain in (0.0, 0.15):
        sc = Scenario("paired", 12, 0.03, n_classes=4, per_class=100)
        probe = GroupShiftSimulator(sc, np.random.default_rng(0), groups, "V-VI", gain, 0.2)
        labels = probe.classes
        rates[gain] = sequential_rates(sc, design, 100, seed=3, test=test,
                                       simulator=lambda s, rng, g=gain: GroupShiftSimulator(s, rng, groups, "V-VI",
                                                                                            g, 0.2))
    assert rates[0.0]["mc_low"] < 0.05 and rates[0.0]["rate"] <= 0.08  # the level, within Monte-Carlo error
    assert rates[0.15]["rate"] > 0.8 and rates[0.15]["mean_seeds"] < 12  # decided, most before the last look
