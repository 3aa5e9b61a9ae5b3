"""Group-sequential studies: the boundaries spend α as designed, the stage-wise p is uniform,
the seed-aware sequential procedure keeps its level under realistic nulls and saves seeds under
an effect, and ``--until-decided`` resumes after a kill between looks without running anything
twice."""

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dermsynth.analysis.null_simulation import Scenario, rejection_rate, sequential_rates
from dermsynth.analysis.sequential import SequentialDesign, decide
from dermsynth.errors import ConfigError
from dermsynth.experiments.sequential_state import seed_sequence, start_or_resume


def brownian_looks(design: SequentialDesign, reps: int, seed: int) -> np.ndarray:
    """Z statistics at every look of ``reps`` null studies (independent increments)."""
    n = np.asarray(design.looks, float)
    increments = np.random.default_rng(seed).normal(size=(reps, len(n))) * np.sqrt(np.diff(n, prepend=0.0))
    return increments.cumsum(axis=1) / np.sqrt(n)


@pytest.mark.parametrize("spending", ["obrien-fleming", "pocock"])
def test_boundaries_spend_alpha_as_designed_at_every_look(spending):
    design = SequentialDesign((5, 10, 15, 20), spending=spending)
    z = brownian_looks(design, 200_000, seed=1)
    two, one = np.asarray(design.boundaries(2)), np.asarray(design.boundaries(1))
    for k in range(4):
        crossed_two = (np.abs(z[:, : k + 1]) >= two[: k + 1]).any(axis=1).mean()
        crossed_one = (z[:, : k + 1] >= one[: k + 1]).any(axis=1).mean()
        assert abs(crossed_two - design.spent(2)[k]) < 0.002
        assert abs(crossed_one - design.spent(1)[k]) < 0.002
    assert design.spent()[-1] == pytest.approx(0.05, abs=1e-9)
    if spending == "obrien-fleming":  # the first look's boundary is z(α/2) / √t exactly
        assert two[0] == pytest.approx(1.959964 / np.sqrt(0.25), rel=1e-6)
        assert two[0] > two[-1] > 1.96  # strict early, close to the fixed test at the end
    else:
        assert np.ptp(two) < 0.05  # Pocock: about the same boundary at every look


def test_stagewise_p_is_uniform_under_the_null_and_below_alpha_exactly_when_crossed():
    design = SequentialDesign((3, 6, 10))
    z = brownian_looks(design, 40_000, seed=2)
    bounds = np.asarray(design.boundaries())
    p = []
    for row in z:
        hit = np.flatnonzero(np.abs(row) >= bounds)
        look = int(hit[0]) if len(hit) else len(bounds) - 1
        p_fixed = float(2 * stats.norm.sf(abs(row[look])))
        p.append(design.stagewise_p(look, p_fixed))
        assert (p[-1] <= 0.05 + 1e-12) == bool(len(hit))
    p = np.asarray(p)
    for level in (0.01, 0.025, 0.05):
        assert abs((p <= level).mean() - level) < 0.004


def test_sequential_seed_aware_study_keeps_its_level_under_realistic_nulls():
    """Naive optional stopping (stop at the first p < 0.05) doubles the false-positive rate; the
    sequential design holds it at 5 % under seed variance and the image × arm interaction."""
    design = SequentialDesign((3, 6, 10))
    for scenario in (Scenario("paired", 10, 0.08), Scenario("interaction", 10, 0.08, interaction_sd=1.0),
                     Scenario("aa_disjoint", 10, 0.03)):
        r = sequential_rates(scenario, design, reps=700, seed=3)
        assert r["mc_low"] <= 0.05 and r["rate"] < 0.075, r
        assert r["naive_rate"] > 0.075 and r["naive_rate"] > r["rate"] + 0.03, r


def test_planted_effect_is_decided_with_fewer_seeds_than_the_fixed_design_of_equal_power():
    design = SequentialDesign((3, 6, 10))
    planted = Scenario("effect", 10, 0.08, effect=0.10)
    seq = sequential_rates(planted, design, reps=600, seed=4)
    fixed = rejection_rate(planted, reps=600, seed=4)
    assert seq["rate"] >= fixed["rate"] - 0.04  # the same power (within Monte-Carlo error) ...
    assert seq["mean_seeds"] < 9.3  # ... from fewer seeds per arm than the fixed design's 10
    strong = sequential_rates(Scenario("effect", 10, 0.03, effect=0.10), design, reps=300, seed=5)
    assert strong["rate"] > 0.97 and strong["mean_seeds"] < 7


def test_design_looks_decisions_and_seed_sequence(tmp_path):
    assert SequentialDesign.spaced(5, 10, 3).looks == (5, 8, 10)
    assert SequentialDesign.spaced(4, 5, 4).looks == (4, 5)
    with pytest.raises(ConfigError, match="below"):
        SequentialDesign.spaced(10, 5)
    with pytest.raises(ConfigError, match="increase"):
        SequentialDesign((5, 5))
    with pytest.raises(ConfigError, match="spending"):
        SequentialDesign((2, 4), spending="haybittle")
    design = SequentialDesign((3, 6, 10))
    assert decide(design, 0, 0.01, 0.5).decision == "continue"  # 0.01 is not enough at an early look
    assert decide(design, 0, 1e-5, 0.5).decision == "difference"
    assert decide(design, 1, 0.6, 1e-4).decision == "equivalence"
    assert decide(design, 2, 0.2, 0.3).decision == "last look"
    assert decide(design, 0, float("nan"), float("nan")).decision == "continue"  # tied seeds: more may help
    assert design.stagewise_p(1, 0.6) == pytest.approx(0.05 + 0.95 * 0.6)  # not crossed: above α
    assert seed_sequence([0, 1, 2], 5) == [0, 1, 2, 3, 4] and seed_sequence([7, 3], 3) == [7, 3, 8]
    start_or_resume(tmp_path, design.as_dict(), None)
    assert start_or_resume(tmp_path, design.as_dict(), None)["design"]["looks"] == [3, 6, 10]
    with pytest.raises(ConfigError, match="looks"):
        start_or_resume(tmp_path, SequentialDesign((3, 10)).as_dict(), None)


def sequential_spec(demo_root) -> dict:
    return {
        "name": "sequential", "seeds": 2,
        # test_resnet at lr 3e-3: tiny test_efficientnet runs of 1 epoch predicted one class on an Intel Xeon
        # (every look "not comparable"), which ends the study before the kill this test needs
        "base": dict(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4,
                     image_size=32, backbone="test_resnet", lr=3e-3, max_epochs=1, patience=1,
                     cache_dir=str(demo_root / "cache"), threads=1),
        "generator": {"backend": "builtin", "methods": ["inpaint"], "per_image": 2, "steps": 4, "size": 16,
                      "train_steps": 5, "block_out_channels": [16, 32], "batch_size": 32},
        "grid": {"n_real": [2], "synthetic_per_real": [0, 2], "synthetic_methods": ["inpaint"]},
    }


@pytest.mark.slow
def test_until_decided_resumes_after_a_kill_between_looks_and_runs_nothing_twice(demo_root, tmp_path):
    from dermsynth.analysis.report import build_report
    from dermsynth.analysis.sequential_study import run_until_decided
    from dermsynth.experiments.spec import validate_experiment

    cfg, out = tmp_path / "spec.json", tmp_path / "study"
    cfg.write_text(json.dumps(sequential_spec(demo_root)))
    # look 1 runs 2 cells × 2 seeds; the child dies (SIGKILL) as the first run of look 2 starts
    script = textwrap.dedent(f"""
        import json, os, signal
        import dermsynth.experiments.executors as executors
        from dermsynth.experiments.spec import validate_experiment
        from dermsynth.analysis.sequential_study import run_until_decided

        started = []
        real_training = executors.run_training
        def dies_in_look_two(*args, **kwargs):
            started.append(1)
            if len(started) == 5:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_training(*args, **kwargs)
        executors.run_training = dies_in_look_two
        spec = validate_experiment(json.loads(open({str(cfg)!r}).read()))
        run_until_decided(spec, {str(out)!r}, max_seeds=4, looks=2, workers=1)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=600)
    assert proc.returncode == -signal.SIGKILL
    state = json.loads((out / "sequential.json").read_text())
    assert [entry["seeds"] for entry in state["looks"]] == [2]  # look 1 was taken and recorded
    (decision,) = state["looks"][0]["decisions"].values()
    assert decision["decision"] == "continue"  # 1 df at 2 seeds: an early look cannot decide
    assert set(state["extend"].values()) == {4} and len(state["extend"]) == 2  # both arms get seeds
    first = {p.name for p in (out / "runs").glob("*.json")}
    assert len(first) == 4

    spec = validate_experiment(json.loads(cfg.read_text()))
    outcome = run_until_decided(spec, out, max_seeds=4, looks=2, workers=1)
    assert outcome.complete and outcome.looks_taken == 2 and outcome.ran == 4 and outcome.runs == 8
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert first <= {p.name for p in (out / "runs").glob("*.json")}  # look 1's runs kept their ids
    cells = {(r["spec"]["synthetic_per_real"], r["spec"]["seed"]) for r in records}
    assert len(records) == 8 and cells == {(k, s) for k in (0, 2) for s in range(4)}
    again = run_until_decided(spec, out, max_seeds=4, looks=2, workers=1)
    assert again.ran == 0 and again.looks_taken == 2
    with pytest.raises(ConfigError, match="looks"):
        run_until_decided(spec, out, max_seeds=6, looks=2, workers=1)
    report = build_report(out).read_text()
    assert "sequential design" in report and "at look 2 of 2" in report
    comps = pd.read_csv(out / "comparisons.csv")
    assert comps["look"].tolist() == [2] and comps["seeds"].tolist() == [4]
