"""Issue 38: the imbalance remedies beside synthetic data (focal loss) and gaps as outcomes (the
worst group, the worst class, equalised odds) with a seed-aware test of a narrowed gap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dermsynth.analysis.gap_outcomes import gap_test, outcomes_of
from dermsynth.train.losses import focal_loss
from dermsynth.train.spec import RunSpec


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_spares_easy_images():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(12, 4, generator=g), torch.randint(0, 4, (12,), generator=g)
    weight = torch.tensor([0.5, 1.0, 2.0, 4.0])
    soft = torch.softmax(torch.randn(12, 4, generator=g), 1)  # MixUp/CutMix targets
    for w in (None, weight):
        assert torch.allclose(focal_loss(logits, target, 0.0, w), F.cross_entropy(logits, target, weight=w))
        assert torch.allclose(focal_loss(logits, soft, 0.0, w), F.cross_entropy(logits, soft, weight=w))
    easy, hard = torch.tensor([[6.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    y = torch.tensor([0])
    ratio_easy = focal_loss(easy, y, 2.0) / F.cross_entropy(easy, y)
    ratio_hard = focal_loss(hard, y, 2.0) / F.cross_entropy(hard, y)
    assert ratio_easy < 1e-4 and ratio_hard == pytest.approx(0.25)  # (1 − p)² with p = 0.998 and 0.5


def test_focal_loss_changes_no_existing_run_id():
    assert RunSpec().run_id() == RunSpec(loss="cross_entropy", focal_gamma=0.5).run_id()  # γ unused: reset
    assert RunSpec(loss="focal").run_id() != RunSpec().run_id()
    assert RunSpec(loss="focal").run_id() != RunSpec(loss="focal", focal_gamma=1.0).run_id()


def test_gap_outcomes_equal_a_direct_computation():
    rng = np.random.default_rng(3)
    label = rng.integers(0, 2, 120)
    group = np.array(["I-II", "III-IV", "V-VI", None] * 30, dtype=object)
    correct = rng.random(120) < 0.7
    got = outcomes_of(correct, label, group, 2)
    accs = {g: correct[group == g].mean() for g in ("I-II", "III-IV", "V-VI")}
    predicted_pos = np.where(label == 1, correct, ~correct)
    tpr = [predicted_pos[(group == g) & (label == 1)].mean() for g in accs]
    fpr = [predicted_pos[(group == g) & (label == 0)].mean() for g in accs]
    assert got["worst_group_accuracy"] == pytest.approx(min(accs.values()))
    assert got["group_gap"] == pytest.approx(max(accs.values()) - min(accs.values()))
    assert got["worst_class_recall"] == pytest.approx(min(correct[label == c].mean() for c in (0, 1)))
    assert got["tpr_gap"] == pytest.approx(max(tpr) - min(tpr))
    assert got["fpr_gap"] == pytest.approx(max(fpr) - min(fpr))
    small = np.array(["I-II"] * 116 + ["V-VI"] * 4, dtype=object)  # a group under MIN_GROUP_N is not counted
    assert np.isnan(outcomes_of(correct, label, small, 2)["group_gap"])


def test_the_gap_interval_adds_the_seed_and_the_test_image_terms():
    rng = np.random.default_rng(0)
    label, group = np.repeat([0, 1, 2], 40), np.array(["a", "b", "c"] * 40, dtype=object)
    a = [rng.random(120) < 0.6 for _ in range(4)]
    b = [rng.random(120) < 0.5 for _ in range(4)]
    res = gap_test("worst_group_accuracy", a, b, label, group, 3, [0, 1, 2, 3], [0, 1, 2, 3], reps=300)
    fa = [outcomes_of(r, label, group, 3)["worst_group_accuracy"] for r in a]
    fb = [outcomes_of(r, label, group, 3)["worst_group_accuracy"] for r in b]
    d = np.array(fa) - np.array(fb)
    assert res.difference == pytest.approx(d.mean()) and res.df == 3
    assert res.se**2 == pytest.approx(d.var(ddof=1) / 4 + res.image_variance)
    assert res.image_variance > 0 and res.ci_low < res.difference < res.ci_high
    narrower = gap_test("group_gap", a, b, label, group, 3, [0, 1, 2, 3], [0, 1, 2, 3], reps=50)
    gaps = [outcomes_of(r, label, group, 3)["group_gap"] for r in (*a, *b)]
    assert narrower.difference == pytest.approx(np.mean(gaps[4:]) - np.mean(gaps[:4]))  # positive = narrower


def test_the_gap_test_keeps_its_level_under_realistic_nulls_and_detects_a_narrowed_gap():
    """A short run of bench/gap_test_validity.py: 150 simulated studies per row (the bench runs
    more): paired seeds and an image × arm interaction at 3 seeds, then a +15-point lift of a group
    20 points below the others at 5 seeds."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from gap_test_validity import GroupShiftSimulator, rate, skin_groups

    from dermsynth.analysis.null_simulation import Scenario, StudySimulator

    for null, inter in (("paired", 0.0), ("interaction", 1.0)):
        sc = Scenario(null, 3, 0.08, interaction_sd=inter, n_classes=4, per_class=40)
        groups = skin_groups(160)
        r, lo, _ = rate(StudySimulator(sc, np.random.default_rng(1)), "worst_group_accuracy", groups, 150, 40)
        assert lo < 0.05 and r <= 0.08, (null, r)  # at or below the level, within Monte-Carlo error
    sc = Scenario("paired", 5, 0.03, n_classes=4, per_class=100)
    groups = skin_groups(400)
    sim = GroupShiftSimulator(sc, np.random.default_rng(2), groups, "V-VI", 0.15, handicap=0.2)
    r, _, _ = rate(sim, "worst_group_accuracy", groups, 60, 40)
    assert r > 0.6  # bench: the power at each seed count, and for the gap itself, in docs/benchmarks.md


def _imbalanced(tmp_path, per_ref: int):
    """16 real images (classes of 10, 4 and 2; two skin-type groups of 12 and 4) and a manifest
    with ``per_ref`` synthetic images of each, their files present."""
    import pandas as pd

    real = pd.DataFrame({"id": [f"r{j}" for j in range(16)], "label": ["a"] * 10 + ["b"] * 4 + ["c"] * 2,
                         "skin_type": [2] * 12 + [6] * 4, "skin_group": ["I-II"] * 12 + ["V-VI"] * 4,
                         "path": "x"})
    rows = []
    for _, r in real.iterrows():
        for j in range(per_ref):
            path = tmp_path / f"{r['id']}-{j}.png"
            path.write_bytes(b"")
            rows.append({"synth_id": f"{r['id']}-{j}", "ref_id": r["id"], "label": r["label"], "method": "inpaint",
                         "path": str(path), "seed": j})
    return real, pd.DataFrame(rows)


def test_each_allocation_spends_the_same_budget_where_it_says(tmp_path):
    from dermsynth.errors import DataError
    from dermsynth.train.mixing import add_synthetic

    real, manifest = _imbalanced(tmp_path, 8)
    per_real = add_synthetic(real, manifest, 1, 0)
    classes = add_synthetic(real, manifest, 1, 0, allocation="balance_classes")
    groups = add_synthetic(real, manifest, 1, 0, allocation="balance_skin_types")

    def synthetic(mixed, col):
        return mixed[mixed["synthetic"]][col].value_counts().to_dict()

    assert synthetic(per_real, "label") == {"a": 10, "b": 4, "c": 2}
    assert synthetic(classes, "label") == {"a": 1, "b": 7, "c": 8}  # the rare classes first: 11, 11, 10 in all
    assert synthetic(groups, "skin_group") == {"V-VI": 12, "I-II": 4}  # 12 + 4 and 4 + 12: level
    assert all(len(m[m["synthetic"]]) == 16 for m in (per_real, classes, groups))  # one budget
    assert add_synthetic(real, manifest, 1, 1, allocation="balance_classes")["id"].tolist() != classes["id"].tolist()
    real2, few = _imbalanced(tmp_path, 2)
    with pytest.raises(DataError, match="synthetic_allocation=balance_classes"):
        add_synthetic(real2, few, 1, 0, allocation="balance_classes")  # class c needs 4 per reference


def test_an_allocation_changes_no_existing_run_id_and_sizes_the_store_to_its_cap():
    from dermsynth.experiments.synthetic_needs import images_per_reference
    from dermsynth.train.spec import ALLOCATION_CAP

    assert RunSpec(synthetic_allocation="per_real").run_id() == RunSpec().run_id()
    assert RunSpec(synthetic_allocation="balance_classes").run_id() != RunSpec().run_id()
    assert images_per_reference(RunSpec(synthetic_per_real=2, synthetic_allocation="balance_classes")) == \
        2 * ALLOCATION_CAP


def test_by_error_gives_the_budget_in_proportion_to_the_pilot_error(tmp_path):
    from dermsynth.errors import ConfigError
    from dermsynth.train.allocation import error_fill
    from dermsynth.train.mixing import add_synthetic

    real, manifest = _imbalanced(tmp_path, 8)
    mixed = add_synthetic(real, manifest, 1, 0, allocation="by_error", errors={"a": 0.1, "b": 0.3, "c": 0.6})
    got = mixed[mixed["synthetic"]]["label"].value_counts().to_dict()
    assert got == {"a": 2, "b": 6, "c": 8}  # c: 9.6 capped at 4 × 2; its 8 left shared 1 : 3 by a and b
    by_group = add_synthetic(real, manifest, 1, 0, allocation="by_error_skin_types", errors={"I-II": 0.0, "V-VI": 1.0})
    assert by_group[by_group["synthetic"]]["skin_group"].value_counts().to_dict() == {"V-VI": 16}
    assert error_fill({"a": 10, "b": 10}, {"a": 0.0, "b": 0.0}, 20, 4) == {"a": 10, "b": 10}  # no error: per_real
    assert error_fill({"a": 10, "b": 10}, {"a": 1.0}, 20, 4) == {"a": 10, "b": 10}  # an unmeasured stratum: the mean
    with pytest.raises(ConfigError, match="pilot"):
        add_synthetic(real, manifest, 1, 0, allocation="by_error")


def test_a_store_is_sized_to_each_references_quota_and_skin_allocations_need_kept_skin(tmp_path):
    """Generation makes each reference's quota under a balancing allocation, not the cap for every
    reference; a skin-type allocation is refused where the generator does not keep the skin."""
    from dermsynth.data.splits import load_split
    from dermsynth.errors import ConfigError
    from dermsynth.experiments.runner import resolve_runs, stage_tasks
    from dermsynth.experiments.spec import validate_experiment
    from dermsynth.train.allocation import quotas
    from dermsynth.train.spec import ALLOCATION_CAP
    from dermsynth.train.training_set import real_subset

    def study(allocation, methods):
        return validate_experiment({
            "name": "sized", "seeds": 1, "recognisability": False,
            "base": {"dataset": "demo", "root": str(tmp_path / "demo"), "demo_n_per_class": 12, "demo_size": 16,
                     "n_test": 2, "n_val": 2, "n_real": 6, "class_n_real": {"psoriasis": 2},
                     "synthetic_per_real": 1, "synthetic_methods": methods},
            "grid": {"synthetic_allocation": allocation},
            "generator": {"methods": methods, "per_image": 8}})

    spec = study(["per_real", "balance_classes"], ["text-to-image"])
    runs = resolve_runs(spec, tmp_path)
    generate = [t for t in stage_tasks(spec, runs, tmp_path) if t.kind == "generate"]
    assert all(set(t.payload.counts) == {"text-to-image"} for t in generate)
    made = {ref: n for t in generate for ref, n in t.payload.counts["text-to-image"].items()}
    balanced = next(r for r in runs if r.synthetic_allocation == "balance_classes")
    real = real_subset(balanced, load_split(balanced.split_spec()))
    want = quotas(real, 1, "balance_classes", balanced.seed, ALLOCATION_CAP)
    assert made == {ref: max(int(q), 1) for ref, q in want.items()}  # the per_real arm still needs 1 of each
    assert sum(made.values()) < ALLOCATION_CAP * len(real)  # not the cap for every reference
    unkept = study(["balance_skin_types"], ["text-to-image"])
    with pytest.raises(ConfigError, match="do not keep the reference's skin"):
        stage_tasks(unkept, resolve_runs(unkept, tmp_path), tmp_path)
    inpaint = study(["balance_skin_types"], ["inpaint"])
    runs = resolve_runs(inpaint, tmp_path)
    sized = [t.payload.counts["inpaint"] for t in stage_tasks(inpaint, runs, tmp_path) if t.kind == "generate"]
    real = real_subset(runs[0], load_split(runs[0].split_spec()))
    want = quotas(real, 1, "balance_skin_types", runs[0].seed, ALLOCATION_CAP)
    assert {ref: n for c in sized for ref, n in c.items() if n} == {ref: int(q) for ref, q in want.items() if q}


def test_a_filtered_view_is_checked_against_each_references_quota(tmp_path):
    """A balancing allocation gives many references nothing: a filtered view that keeps exactly the
    quotas passes, one image short of a quota is refused by class."""
    from dermsynth.errors import DataError
    from dermsynth.train.allocation import quotas
    from dermsynth.train.spec import ALLOCATION_CAP
    from dermsynth.train.synthetic_views import check_enough

    real, manifest = _imbalanced(tmp_path, 8)
    spec = RunSpec(synthetic_per_real=1, synthetic_allocation="balance_classes", synthetic_filter="confidence",
                   seed=0)
    want = quotas(real, 1, "balance_classes", 0, ALLOCATION_CAP)
    assert (want == 0).any()  # the largest class's references mostly get none
    rank = manifest.groupby("ref_id").cumcount()
    kept = manifest[rank < manifest["ref_id"].map(want)]
    check_enough(kept, manifest, spec, real)
    short = kept.drop(kept.index[kept["ref_id"] == want.idxmax()][:1])
    with pytest.raises(DataError, match="synthetic_allocation=balance_classes"):
        check_enough(short, manifest, spec, real)


def test_a_main_comparison_names_a_gap_outcome_the_report_knows():
    from dermsynth.analysis.gap_outcomes import OUTCOMES
    from dermsynth.errors import ConfigError
    from dermsynth.experiments.spec import GAP_OUTCOMES, validate_experiment

    assert set(GAP_OUTCOMES) == set(OUTCOMES)
    base = {"name": "m", "grid": {"synthetic_per_real": [0, 1]}}
    ok = validate_experiment({**base, "main_comparison": {"arm": {"synthetic_per_real": 1}, "outcome": "group_gap"}})
    assert ok.main_comparison.outcome == "group_gap"
    assert ok.digest() == validate_experiment(base).digest()  # an analysis choice: no run changes
    with pytest.raises(ConfigError, match="outcome"):
        validate_experiment({**base, "main_comparison": {"arm": {}, "outcome": "accuracy"}})
