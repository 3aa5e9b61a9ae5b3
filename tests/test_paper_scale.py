"""The defects that only show at paper scale, each pinned by a test: cleaning reaches the split,
imbalance comparisons exist, Fig. 5 has per-group tests, dose fits only where they belong,
stale results are never reused, degenerate classifiers are flagged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from dermsynth.analysis.report import build_report, dose_fits
from dermsynth.data.splits import SplitSpec, load_split
from dermsynth.errors import ConfigError, DataError
from dermsynth.experiments.presets import preset_path
from dermsynth.experiments.results import load_records, results_table
from dermsynth.experiments.runner import planned_runs, run_experiment
from dermsynth.experiments.spec import cells, load_experiment, validate_experiment
from dermsynth.train.metrics import summarize
from dermsynth.train.run import pin_inputs

TINY_GEN = {"backend": "builtin", "methods": ["text-to-image"], "per_image": 3, "steps": 2, "size": 16,
            "train_steps": 2, "block_out_channels": [16, 32], "batch_size": 32}


def _base(demo_root, **over):
    return dict(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4,
                image_size=16, backbone="test_resnet", max_epochs=1, patience=1, cache_dir=str(demo_root / "cache"),
                threads=1, synthetic_methods=["text-to-image"], **over)


@pytest.fixture(scope="module")
def imbalance_study(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("imbalance")
    spec = validate_experiment({"name": "imb", "seeds": 2, "recognisability": False, "base": _base(demo_root, n_real=4),
                                "generator": TINY_GEN,
                                "imbalance": {"rare_classes": ["psoriasis", "lichen planus"], "rare_n": [1, 2]}})
    run_experiment(spec, out, workers=1)
    build_report(out)
    return out


def test_imbalance_arms_reach_parity_exactly():
    for name in ("imbalance_cpu", "imbalance_paper"):
        spec = load_experiment(preset_path(name))
        runs = cells(spec)
        n_real = spec.base["n_real"]
        for r in runs:
            (rare, n), = r.class_n_real.items()
            if r.synthetic_per_real:
                assert n * (r.synthetic_per_real + 1) == n_real
            if r.duplicate_classes:
                assert n * r.duplicate_classes[rare] == n_real
    paper = load_experiment(preset_path("imbalance_paper"))
    assert len(paper.imbalance.rare_classes) == 9 and len(cells(paper)) == 9 * 3 * 3 * 5  # every class rare in turn
    with pytest.raises(ConfigError, match="parity"):
        validate_experiment({"name": "x", "base": {"n_real": 60}, "imbalance": {"rare_classes": ["a"], "rare_n": [7]}})


def test_imbalance_report_has_its_comparisons(imbalance_study):
    comps = pd.read_csv(imbalance_study / "comparisons.csv")
    # (2 rare classes + their aggregate) × 2 sizes × 2 scopes × 3 pairs of arms
    assert len(comps) == 3 * 2 * 2 * 3
    pooled = comps[comps["rare_class"] == "all rare classes"]
    assert (pooled.loc[pooled["scope"] == "rare class", "n_test"] == 10).all()  # both classes' test images
    assert set(comps["comparison"]) == {"synthetic vs imbalanced", "synthetic vs duplication",
                                        "duplication vs imbalanced"}
    rare = comps[(comps["scope"] == "rare class") & (comps["rare_class"] != "all rare classes")]
    assert (rare["n_test"] == 5).all()  # n = that class's test images, not the test set
    assert (comps.loc[comps["scope"] == "overall", "n_test"] == 45).all()
    assert (comps["p_bh"] >= comps["p_value"] - 1e-12).all()
    html = (imbalance_study / "report.html").read_text()
    assert "synthetic vs duplication" in html and "No comparison" not in html
    assert not (imbalance_study / "figures" / "fig3_accuracy_vs_nreal.png").exists()  # no Fig. 3 view
    assert "90 % of the fitted gain" not in html  # and no dose fit, although 4 ratios occur


def test_dose_fits_only_within_constant_cells():
    rng = np.random.default_rng(0)
    rows = []
    for n_real in (16, 32):
        for k in (0, 10, 25, 50):
            for seed in range(3):
                rows.append({"n_real": n_real, "synthetic_per_real": k, "transforms": False, "seed": seed,
                             "synthetic_methods": None if k == 0 else '["text-to-image"]',
                             "accuracy": 0.3 + 0.1 * (1 - np.exp(-k / 10)) + rng.normal(0, 0.01)})
    table = pd.DataFrame(rows)
    fits = dose_fits(table)
    assert {dict(c)["n_real"] for c in fits} == {16, 32} and all(dict(c)["method"] == "text-to-image" for c in fits)
    # a field that varies with the ratio (here lr) splits the cells: too few ratios in each, no fit
    table["lr"] = [1e-3 * (1 + k % 3) for k in table["synthetic_per_real"]]
    assert dose_fits(table) == {}


def test_fig5_group_comparisons(demo_root, tmp_path):
    spec = validate_experiment({"name": "fig5", "seeds": 2, "recognisability": False, "generator": TINY_GEN,
                                "base": _base(demo_root, n_real=4), "grid": {"synthetic_per_real": [0, 1]}})
    run_experiment(spec, tmp_path, workers=1)
    build_report(tmp_path)
    groups = pd.read_csv(tmp_path / "skin_group_comparisons.csv")
    split = load_split(SplitSpec(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5,
                                 n_val=4))
    sizes = split.test["skin_group"].value_counts().to_dict()
    assert dict(zip(groups["skin_group"], groups["n_group"], strict=True)) == sizes  # n = each group's test size
    assert (groups["p_bh"] >= groups["p_value"] - 1e-12).all()
    html = (tmp_path / "report.html").read_text()
    assert "By skin-type group (Fig. 5)" in html
    # cost accounting from the measured stage times: device-hours per point of accuracy
    timings = json.loads((tmp_path / "stage_timings.json").read_text())
    assert {"train-generator", "generate", "training_runs"} <= set(timings)
    assert "What the synthetic data cost" in html and "device-hours" in html


def test_cleaning_reaches_the_split(demo_table, demo_root, tmp_path):
    """Duplicate clusters become split groups, excluded images vanish, and the split's digest
    (part of every run id) changes with the files."""
    spec = SplitSpec(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4)
    plain = load_split(spec)
    test_id = plain.test["id"].iloc[0]
    pool_id = plain.pool[plain.pool["label"] == plain.test["label"].iloc[0]]["id"].iloc[0]
    clusters = tmp_path / "clusters.csv"
    pd.DataFrame({"id": [test_id, pool_id], "cluster": ["dup-1", "dup-1"]}).to_csv(clusters, index=False)
    clean = load_split(spec.model_copy(update={"duplicates_file": str(clusters)}))
    t = clean.table.set_index("id")
    assert t.loc[test_id, "split"] == t.loc[pool_id, "split"]  # the pair never straddles
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(f"{pool_id}\n")
    dropped = load_split(spec.model_copy(update={"exclude_file": str(exclude)}))
    assert pool_id not in set(dropped.table["id"])
    assert len({plain.digest(), clean.digest(), dropped.digest()}) == 3
    with pytest.raises(DataError, match="clusters-missing.csv"):
        load_split(spec.model_copy(update={"duplicates_file": str(tmp_path / "clusters-missing.csv")}))
    pd.DataFrame({"id": [test_id]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="cluster"):
        load_split(spec.model_copy(update={"duplicates_file": str(tmp_path / "bad.csv")}))


def test_changed_store_or_data_gives_new_run_ids(imbalance_study, tmp_path):
    spec_dict = json.loads((imbalance_study / "experiment.json").read_text())["spec"]
    from dermsynth.experiments.spec import ExperimentSpec

    spec = ExperimentSpec(**spec_dict)
    done = {r["run_id"] for r in load_records(imbalance_study)}
    assert {r.run_id() for r in planned_runs(spec, imbalance_study)} == done
    copy = tmp_path / "copy"
    shutil.copytree(imbalance_study, copy)
    # one synthetic image more in the store: every run that draws from it is a new run
    man = sorted((copy / "synthetic" / "manifest").glob("*.parquet"))[0]
    extra = pd.read_parquet(man).iloc[:1].assign(synth_id="text-to-image__extra__099")
    (copy / "synthetic" / extra["path"].iloc[0]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(copy / "synthetic" / pd.read_parquet(man)["path"].iloc[0], copy / "synthetic" / "images" / "x.png")
    extra.assign(path="images/x.png").to_parquet(copy / "synthetic" / "manifest" / "part-extra.parquet")
    spec2 = spec.model_copy(update={"generator": spec.generator.model_copy(update={"store": str(copy / "synthetic")})})
    again = planned_runs(spec2, copy)
    synthetic = [r for r in again if r.synthetic_per_real]
    assert synthetic and not ({r.run_id() for r in synthetic} & done)
    # a run pinned to the old store refuses to train on the changed one
    pinned = next(r for r in planned_runs(spec, imbalance_study) if r.synthetic_per_real)
    moved = pinned.model_copy(update={"synthetic_store": str(copy / "synthetic")})
    with pytest.raises(DataError, match="synthetic_fingerprint"):
        pin_inputs(moved, load_split(moved.split_spec()))


def test_degenerate_runs_are_flagged():
    classes = ["benign", "malignant"]
    pred = pd.DataFrame({"label": ["benign"] * 22 + ["malignant"] * 2})
    probs = np.tile([0.9, 0.1], (24, 1))
    m = summarize(pred, probs, classes)
    assert m["degenerate"] and m["top_predicted_class"] == "benign"
    assert np.isclose(m["accuracy"], 22 / 24) and np.isclose(m["balanced_accuracy"], 0.5)
    ok = summarize(pred, np.array([[0.9, 0.1]] * 20 + [[0.2, 0.8]] * 2 + [[0.2, 0.8]] * 2), classes)
    assert not ok["degenerate"] and ok["auroc"] is not None


def test_record_holds_versions_and_report_warns_on_degenerate(imbalance_study):
    rec = load_records(imbalance_study)[0]
    assert {"dermsynth", "torch", "timm", "diffusers"} <= set(rec["environment"])
    table = results_table(imbalance_study)
    assert "degenerate" in table and "auroc" in table


def test_steps_matched_control_and_equal_steps(demo_root, tmp_path):
    spec = validate_experiment({"name": "ctrl", "seeds": 1, "recognisability": False, "generator": TINY_GEN,
                                "steps_matched_control": True, "base": _base(demo_root, n_real=2),
                                "grid": {"synthetic_per_real": [0, 2]}})
    runs = cells(spec)
    assert sorted((r.synthetic_per_real, r.repeat_real) for r in runs) == [(0, 1), (0, 3), (2, 1)]
    run_experiment(spec, tmp_path, workers=1)
    by_arm = {(r["spec"]["synthetic_per_real"], r["spec"]["repeat_real"]): r for r in load_records(tmp_path)}
    assert by_arm[(0, 3)]["n_train"] == by_arm[(2, 1)]["n_train"] == 3 * by_arm[(0, 1)]["n_train"]
    build_report(tmp_path)
    ctrl = pd.read_csv(tmp_path / "control_comparisons.csv")
    assert len(ctrl) == 1 and ctrl["synthetic_per_real"].iloc[0] == 2
    assert "steps-matched control" in (tmp_path / "report.html").read_text()
    # equal optimisation steps whatever the training-set size
    from dermsynth.train.run import run_training

    for arm in ((0, 1), (2, 1)):
        r = next(x for x in runs if (x.synthetic_per_real, x.repeat_real) == arm)
        r = r.model_copy(update={"train_steps": 7, "synthetic_store": str(tmp_path / "synthetic"),
                                 "synthetic_fingerprint": None, "data_digest": None})
        assert run_training(r)["fit"]["steps"] == 7


def test_generators_can_learn_from_each_runs_subset_only(demo_root, tmp_path):
    from dermsynth.data.synthetic_store import read_training_ids
    from dermsynth.train.training_set import real_subset

    gen = {**TINY_GEN, "methods": ["inpaint"], "finetune_on": "subset"}
    spec = validate_experiment({"name": "subset", "seeds": 2, "recognisability": False, "generator": gen,
                                "base": {**_base(demo_root, n_real=2), "synthetic_methods": ["inpaint"]},
                                "grid": {"synthetic_per_real": [0, 1]}})
    run_experiment(spec, tmp_path, workers=1)
    synthetic = [r for r in planned_runs(spec, tmp_path) if r.synthetic_per_real]
    assert len({r.synthetic_store for r in synthetic}) == 2  # one store (and generator) per seed's subset
    for run in synthetic:
        subset = set(real_subset(run, load_split(run.split_spec()))["id"])
        learnt = read_training_ids(run.synthetic_store)
        assert learnt and learnt <= subset  # the generator saw only this run's real images
    html = build_report(tmp_path).read_text()
    assert "each run&#39;s own real subset" in html or "each run's own real subset" in html


def test_a_generator_made_with_other_settings_is_refused_not_reused(imbalance_study):
    spec = ExperimentSpec_from(imbalance_study)
    builtin = spec.generator.builtin.model_copy(update={"train_steps": 3})
    changed = spec.model_copy(update={"generator": spec.generator.model_copy(update={"builtin": builtin})})
    before = (imbalance_study / "experiment.json").read_text()
    with pytest.raises(ConfigError, match="other settings.*train_steps"):
        run_experiment(changed, imbalance_study, force=True)
    assert (imbalance_study / "experiment.json").read_text() == before  # a refused run marks nothing


def ExperimentSpec_from(out):  # noqa: N802 - reads like the class it returns
    from dermsynth.experiments.spec import ExperimentSpec

    return ExperimentSpec(**json.loads((out / "experiment.json").read_text())["spec"])


def test_linear_probe_triage_of_a_grid(imbalance_study, tmp_path):
    """Every cell probed from features computed once, records in the usual schema, a report."""
    from dermsynth.experiments.triage import triage

    spec = ExperimentSpec_from(imbalance_study)
    res = triage(spec, imbalance_study, tmp_path / "triage")
    records = load_records(tmp_path / "triage")
    assert res["cells"] == len(records) == len(cells(spec)) == 2 * 2 * 3 * 2
    assert all(r["spec"]["mode"] == "linear-probe" for r in records)
    assert {r["n_train_synthetic"] > 0 for r in records} == {True, False}
    assert "synthetic vs duplication" in build_report(tmp_path / "triage").read_text()
