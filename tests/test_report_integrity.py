"""Reports that mix nothing they should not (issue 21, items 1–5): stale runs, pandas-version
independence, one BH family and panel row per generator variant, sentences that name their
cell, the imbalance aggregate resampled by test image."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth.analysis.figures import draw_fig3
from dermsynth.analysis.imbalance import AGGREGATE, imbalance_comparisons
from dermsynth.analysis.report import build_report, dose_fits
from dermsynth.analysis.summary import distinct_values, synthetic_comparisons, varying_keys
from dermsynth.experiments.results import load_records
from dermsynth.experiments.runner import run_experiment
from dermsynth.experiments.spec import validate_experiment
from dermsynth.stats import bh_adjust

CLASSES = ("a", "b", "c")
PER_CLASS = 120


def _labels() -> list[str]:
    return [c for c in CLASSES for _ in range(PER_CLASS)]


def _records(rows: list[dict], mats: list[np.ndarray]) -> tuple[pd.DataFrame, list[dict]]:
    labels = _labels()
    ids = [f"img{i:03d}" for i in range(len(labels))]
    records = []
    for row, correct in zip(rows, mats, strict=True):
        row.update(accuracy=float(correct.mean()), n_test=len(labels), balanced_accuracy=0.0)
        for c in CLASSES:
            row[f"acc_class:{c}"] = float(correct[[lab == c for lab in labels]].mean())
        records.append({"run_id": row["run_id"], "predictions": {
            "id": ids, "label": labels, "predicted": [lab if ok else "zz" for lab, ok in zip(labels, correct,
                                                                                             strict=True)],
            "skin_group": [None] * len(labels), "probabilities": [[1.0]] * len(labels)}})
    return pd.DataFrame(rows), records


def _correct(rng, acc: float) -> np.ndarray:
    return rng.random(len(CLASSES) * PER_CLASS) < acc


def test_unset_is_one_value_under_any_pandas():
    # None and NaN are one value ("unset"), whatever pandas' astype(str) does with them
    assert distinct_values(pd.Series([None, "none", "none", np.nan], dtype=object)) == 2
    assert distinct_values(pd.Series([None, np.nan])) == 1
    assert distinct_values(pd.Series([{}, {"a": 25}, {"a": 25}], dtype=object)) == 2


def test_dose_fits_keep_the_real_only_point_when_arm_fields_are_unset_there():
    # baselines have generator_finetune unset, synthetic arms "none": an arm field, not a cell key
    # (on pandas 2 the Fig. 4 fits lost their ratio-0 point this way and fitted 10–75 only)
    rng = np.random.default_rng(3)
    rows = [{"run_id": f"r{k}-{s}", "seed": s, "n_real": 16, "synthetic_per_real": k, "transforms": False,
             "synthetic_methods": '["inpaint"]' if k else None, "generator_finetune": "none" if k else None,
             "accuracy": 0.4 + 0.2 * (1 - np.exp(-k / 5)) + rng.normal(0, 0.01), "n_test": 360}
            for k in (0, 2, 5, 10, 20) for s in (0, 1)]
    fits = dose_fits(pd.DataFrame(rows))
    assert len(fits) == 1
    fit = next(iter(fits.values()))
    assert fit.converged and fit.a == pytest.approx(0.4, abs=0.03)  # the ratio-0 point anchors the curve


def test_a_key_that_is_unset_in_some_cells_keeps_their_comparisons():
    # train_steps unset (early stopping) vs 200 steps: two settings, each with its own baseline
    rng = np.random.default_rng(0)
    rows, mats = [], []
    for steps in (None, 200):
        for k in (0, 2):
            for seed in (0, 1):
                rows.append({"run_id": f"r{steps}-{k}-{seed}", "seed": seed, "n_real": 16, "synthetic_per_real": k,
                             "synthetic_methods": '["inpaint"]' if k else None, "transforms": False,
                             "train_steps": steps})
                mats.append(_correct(rng, 0.5 + 0.05 * k))
    table, records = _records(rows, mats)
    assert "train_steps" in varying_keys(table)
    comps = synthetic_comparisons(table, records, reps=20)
    assert len(comps) == 2  # the unset cell used to find no baseline (None ≠ "None" ≠ nan)
    assert sorted(map(str, comps["train_steps"])) == ["200.0", "nan"]


def test_generator_variants_get_their_own_bh_family_and_panel_row():
    rng = np.random.default_rng(1)
    rows, mats = [], []
    for n_real in (4, 16, 64):
        for seed in (0, 1):
            rows.append({"run_id": f"base{n_real}-{seed}", "seed": seed, "n_real": n_real, "synthetic_per_real": 0,
                         "synthetic_methods": None, "transforms": False, "generator_finetune": None})
            mats.append(_correct(rng, 0.4))
            for gen, acc in (("none", 0.45), ("per-class", 0.6)):
                rows.append({"run_id": f"{gen}{n_real}-{seed}", "seed": seed, "n_real": n_real,
                             "synthetic_per_real": 2, "synthetic_methods": '["inpaint"]', "transforms": False,
                             "generator_finetune": gen})
                mats.append(_correct(rng, acc))
    table, records = _records(rows, mats)
    comps = synthetic_comparisons(table, records, reps=20)
    assert len(comps) == 6 and comps["family"].nunique() == 2
    for _, fam in comps.groupby("generator_finetune"):  # BH over each variant's 3 rows, not over all 6
        assert np.allclose(fam["p_bh"], bh_adjust(fam["p_value"]))
        assert np.allclose(fam["p_seed_bh"], bh_adjust(fam["p_seed"]))
    fig = draw_fig3(table, comps)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 2 and any("pretrained generator" in t for t in titles)
    assert any("fine-tuned per class" in t for t in titles)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["4", "16", "64"]  # the tested n_real values, not "10^0"


def test_imbalance_overall_aggregate_is_resampled_by_test_image():
    rng = np.random.default_rng(2)
    rows, mats = [], []
    for rare in ("a", "b"):
        for arm in ("imbalanced", "synthetic", "duplication"):
            for seed in (0, 1):
                rows.append({"run_id": f"{rare}-{arm}-{seed}", "seed": seed, "n_real": 100,
                             "class_n_real": json.dumps({rare: 25}),
                             "synthetic_per_real": 3 if arm == "synthetic" else 0,
                             "synthetic_classes": json.dumps([rare]) if arm == "synthetic" else None,
                             "duplicate_classes": json.dumps({rare: 4}) if arm == "duplication" else "{}",
                             "synthetic_methods": '["inpaint"]' if arm == "synthetic" else None,
                             "transforms": False})
                mats.append(_correct(rng, 0.5))
    table, records = _records(rows, mats)
    comps = imbalance_comparisons(table, records, reps=20)
    overall = comps[(comps["rare_class"] == AGGREGATE) & (comps["scope"] == "overall")]
    assert len(overall) == 3 and (overall["n_test"] == len(CLASSES) * PER_CLASS).all()  # not 2 × 360
    assert set(comps["family"]) == {"pooled over rare classes", "per rare class"}
    per_class = comps[comps["family"] == "per rare class"]
    assert np.allclose(per_class["p_bh"], bh_adjust(per_class["p_value"]))


def _folder_dataset(root, seed: int = 0):
    rng = np.random.default_rng(seed)
    for c, colour in zip(CLASSES, ((200, 40, 40), (40, 200, 40), (40, 40, 200)), strict=True):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(14):
            px = np.clip(np.array(colour) + rng.normal(0, 40, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / c / f"{c}{i:02d}.png")


def _spec(root, tmp_path, **base):
    return validate_experiment({
        "name": "stale", "seeds": 2,
        "base": dict(dataset="folder", root=str(root), n_test=4, n_val=3, image_size=16, backbone="test_efficientnet",
                     max_epochs=1, patience=1, cache_dir=str(tmp_path / "cache"), threads=1, **base),
        "grid": {"n_real": [4]}})


def test_report_holds_exactly_the_runs_the_study_plans_now(tmp_path):
    root, out = tmp_path / "data", tmp_path / "study"
    _folder_dataset(root)
    spec = _spec(root, tmp_path)
    assert run_experiment(spec, out).ran == 2
    rec = load_records(out)[0]
    assert {"pandas", "scipy", "statsmodels", "scikit-learn"} <= set(rec["environment"])
    # a run of another config, written beside these with --force, and a run made on older data
    other = run_experiment(_spec(root, tmp_path, lr=0.01), out, force=True)
    assert other.ran == 2
    spec_path = out / "experiment.json"
    spec_path.write_text(json.dumps({"name": spec.name, "digest": spec.digest(), "spec": spec.model_dump()}))
    old = dict(rec, run_id="0ld0ld0ld0ld0ld0", spec={**rec["spec"], "data_digest": "0123456789abcdef"})
    (out / "runs" / "0ld0ld0ld0ld0ld0.json").write_text(json.dumps(old))
    build_report(out)
    cells = pd.read_csv(out / "cells.csv")
    assert cells["runs"].tolist() == [2]  # not 5
    left = pd.read_csv(out / "left_out_runs.csv")
    assert len(left) == 3
    assert (left["reason"].str.contains("data digest")).sum() == 1
    assert (left["reason"].str.contains("not a run of the current config")).sum() == 2
    assert "were left out" in (out / "report.html").read_text()
    # images edited in place (same names, other bytes): the runs are made again, not reused
    img = root / "a" / "a00.png"
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(img)
    again = run_experiment(spec, out)
    assert again.ran == 2
    current = [r for r in load_records(out) if r["spec"]["lr"] == 1e-3 and r["run_id"] != old["run_id"]]
    assert len(current) == 2 and len({r["spec"]["content_digest"] for r in current}) == 1
    assert current[0]["spec"]["content_digest"] != rec["spec"]["content_digest"]
    # a results folder read where its data is not (a copy on a laptop): reported, with what was not checked
    shutil.rmtree(root)
    build_report(out)
    assert "could not be checked" in (out / "report.html").read_text()


