"""Augmentation arms and synthetic-image filters as study factors (issue 23)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from dermsynth.audits.synthetic_filter import score_store, select, write_view
from dermsynth.data.splits import Split
from dermsynth.data.synthetic_store import read_manifest
from dermsynth.errors import ConfigError, DataError
from dermsynth.experiments.presets import preset_path
from dermsynth.experiments.rehearsal import rehearse
from dermsynth.experiments.spec import cells, load_experiment, validate_experiment
from dermsynth.field_roles import SINCE_IDS, fields_tagged
from dermsynth.train.spec import RunSpec
from dermsynth.train.synthetic_views import filtered_manifest, view_path
from dermsynth.train.transforms import AUGMENTATIONS, AugConfig, Augmentation, augment, augmentation_record

# Run ids computed before the augmentation and filter fields existed (before commit e650d05):
# the default spec, transforms on, and the first and last cells of fig3_cpu and imbalance_cpu.
IDS_BEFORE = {"default": "1bcb04213bdf90ee", "transforms": "b53933be67194989", "fig3_cpu": ["5f53c94b32a58f64",
              "91a109fd47da7442"], "imbalance_cpu": "07b1c92118e7fd2d"}


def test_existing_run_ids_are_unchanged():
    assert RunSpec().run_id() == IDS_BEFORE["default"]
    assert RunSpec(transforms=True).run_id() == IDS_BEFORE["transforms"]
    # seeds 0 and 1 (the presets had 2 seeds then; the seeds added since are new runs)
    fig3 = [r for r in cells(load_experiment(preset_path("fig3_cpu"))) if r.seed < 2]
    assert [fig3[0].run_id(), fig3[-1].run_id()] == IDS_BEFORE["fig3_cpu"]
    imbalance = [r for r in cells(load_experiment(preset_path("imbalance_cpu"))) if r.seed < 2]
    assert imbalance[-1].run_id() == IDS_BEFORE["imbalance_cpu"]
    # "paper" / "none" are the old transforms on / off; a strong arm or a filter is a new cell
    assert RunSpec(augment="paper").run_id() == IDS_BEFORE["transforms"]
    assert RunSpec(augment="none", transforms=True).run_id() == IDS_BEFORE["default"]
    ids = {RunSpec(augment=a).run_id() for a in AUGMENTATIONS}
    assert len(ids) == len(AUGMENTATIONS)
    assert RunSpec(synthetic_filter="novelty").filter_keep == 0.5
    assert RunSpec(synthetic_filter="novelty").run_id() != RunSpec(synthetic_filter="novelty", filter_keep=0.3).run_id()
    # the fields added after ids were in use are declared so (field_roles.SINCE_IDS), not listed apart
    assert set(fields_tagged(RunSpec, SINCE_IDS)) == {"augment", "synthetic_filter", "filter_keep", "filter_digest",
                                                     "cleaning", "held_out_avoids_store", "loss", "focal_gamma",
                                                     "synthetic_allocation", "demo_skin_weights"}


def test_augmentation_arms_are_seeded_distinct_and_recorded():
    raw = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    outs = {}
    for name in AUGMENTATIONS:
        arm = Augmentation(name, 3)
        x1, t1 = arm(raw, y, torch.Generator().manual_seed(1))
        x2, t2 = arm(raw, y, torch.Generator().manual_seed(1))
        assert torch.equal(x1, x2) and torch.equal(t1, t2), name  # reproducible per seed
        assert x1.dtype == torch.float32 and float(x1.min()) >= 0 and float(x1.max()) <= 1
        outs[name] = (x1, t1)
    # "paper" is the transforms runs used before: the same pixels from the same generator
    assert torch.equal(outs["paper"][0], augment(raw.float() / 255, AugConfig(), torch.Generator().manual_seed(1)))
    assert torch.equal(outs["none"][0], raw.float() / 255)
    for name in ("randaugment", "trivialaugment", "augmix", "mixup", "cutmix"):
        assert not torch.equal(outs[name][0], outs["paper"][0]), name
    for name in ("mixup", "cutmix"):  # soft targets: class probabilities
        t = outs[name][1]
        assert t.shape == (6, 3) and torch.allclose(t.sum(1), torch.ones(6))
    rec = augmentation_record("randaugment")
    assert rec["policy"]["num_ops"] == 2 and rec["policy"]["magnitude"] == 9 and "RandAugment" in \
        rec["policy"]["implementation"] and rec["paper_transforms"]["max_rotate"] == 10.0
    assert augmentation_record("none")["paper_transforms"] is None


def test_unknown_augmentation_or_filter_lists_the_choices():
    base = {"name": "x", "seeds": 1, "base": {"dataset": "demo"}}
    with pytest.raises(ConfigError) as exc:
        validate_experiment({**base, "grid": {"augment": ["paper", "randaug"]}})
    assert "augment" in str(exc.value) and "'randaugment'" in str(exc.value) and "'cutmix'" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        validate_experiment({**base, "grid": {"synthetic_filter": ["clip"]}})
    assert "synthetic_filter" in str(exc.value) and "'confidence'" in str(exc.value) and "'novelty'" in str(exc.value)


def test_generator_must_make_enough_images_for_a_filter(tmp_path):
    from dermsynth.experiments.runner import resolve_runs, stage_tasks

    spec = validate_experiment({
        "name": "x", "seeds": 1,
        "base": {"dataset": "demo", "n_real": 2, "synthetic_per_real": 2, "synthetic_filter": "confidence",
                 "filter_keep": 0.4},
        "generator": {"methods": ["text-to-image"], "per_image": 4}})
    with pytest.raises(ConfigError, match="needs 5 to choose from but generator.per_image=4"):  # ceil(2 / 0.4)
        stage_tasks(spec, resolve_runs(spec, tmp_path), tmp_path)


@pytest.fixture
def store_and_split(reader_store_split, tmp_path):
    """A copy of the tiny quickstart's store (2 images per reference and method), and its split with
    every test image's file made unreadable: a filter that read one would fail."""
    store, split = reader_store_split
    mine = tmp_path / "store"
    shutil.copytree(store, mine, ignore=shutil.ignore_patterns("views"))
    table = split.table.copy()
    table.loc[table["split"] == "test", "path"] = str(tmp_path / "no-such-test-image.png")
    return mine, Split(table, split.split_seed)


def test_filters_score_rank_within_reference_and_never_read_test_images(store_and_split, demo_root, tmp_path):
    store, split = store_and_split
    spec = RunSpec(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4,
                   image_size=32, backbone="test_efficientnet", max_epochs=2, patience=1,
                   cache_dir=str(tmp_path / "cache"), threads=1)
    scores = score_store(split, store, spec)  # trains on the pool, never touches a test image
    man = read_manifest(store)
    assert sorted(scores["synth_id"]) == sorted(man["synth_id"].astype(str))
    assert scores["confidence"].between(0, 1).all() and scores["similarity"].between(-1, 1).all()
    assert (scores["novelty"] >= 0).all()
    kept = {}
    for name in ("confidence", "similarity", "novelty"):
        sel = select(scores, name, 0.5)
        kept[name] = set(sel["synth_id"])
        per_group = sel.groupby(["ref_id", "method"]).size()
        assert (per_group == 1).all() and len(per_group) == scores.groupby(["ref_id", "method"]).ngroups
        best = scores.loc[scores.groupby(["ref_id", "method"])[name].idxmax(), "synth_id"]
        assert kept[name] == set(best)  # the highest score of each reference's images
    assert len({frozenset(v) for v in kept.values()}) > 1  # the three filters choose differently
    # a view is ids only; a run that needs more per reference than it keeps is refused by class and method
    path = write_view(store, "confidence", 0.5, scores, "key")
    view = json.loads(path.read_text())
    assert path == view_path(store, "confidence", 0.5) and set(view["kept_ids"]) == kept["confidence"]
    assert not list(path.parent.glob("*.png"))
    counts = pd.DataFrame(view["counts"])
    assert (counts["kept"] * 2 == counts["available"]).all()
    run = spec.model_copy(update={"synthetic_store": str(store), "synthetic_per_real": 2,
                                  "synthetic_filter": "confidence", "filter_keep": 0.5,
                                  "synthetic_methods": ["text-to-image"]})
    refs = split.pool[split.pool["id"].isin(set(man["ref_id"]))]
    label = sorted(refs["label"])[0]
    with pytest.raises(DataError) as exc:
        filtered_manifest(man, run, refs)
    msg = str(exc.value)
    assert f"class {label!r}" in msg and "method 'text-to-image'" in msg and "confidence" in msg
    n_refs = int((refs["label"] == label).sum())
    assert f"keeps {n_refs} of {2 * n_refs}" in msg and f"needs {2 * n_refs}" in msg
    ok = filtered_manifest(man, run.model_copy(update={"synthetic_per_real": 1}), refs)
    assert set(ok["synth_id"]) <= kept["confidence"] and np.isin(ok["method"], ["inpaint", "text-to-image"]).all()


def test_cpu_preset_is_the_paper_preset_at_demo_scale():
    """Both presets ask the same questions: the same augmentation arms, filters and shares."""
    def arms(name):
        return {(r.augmentation(), r.synthetic_filter, r.filter_keep, r.synthetic_per_real > 0)
                for r in cells(load_experiment(preset_path(name)))}

    assert arms("augment_vs_synthetic_cpu") == arms("augment_vs_synthetic_paper")
    assert len(arms("augment_vs_synthetic_cpu")) == 7 + 7 + 3


def _rehearsal(name: str, out):
    return rehearse(load_experiment(preset_path(name)), seeds=1, cache_dir=str(out / "cache"), smaller=True)


def test_paper_preset_rehearsal_plans_its_stages(tmp_path):
    """The paper preset's rehearsal: every arm of the CPU rehearsal, and a task graph in which each
    class's generation waits for its own fine-tune and the filter for every generation. (Its run
    end to end is the CPU preset's rehearsal below plus the per-class fine-tunes, which the fig3
    rehearsal runs.)"""
    from dermsynth.experiments.runner import resolve_runs, stage_tasks

    spec = _rehearsal("augment_vs_synthetic_paper", tmp_path)
    cpu = _rehearsal("augment_vs_synthetic_cpu", tmp_path)
    arms = [{(r.augmentation(), r.synthetic_filter, r.filter_keep, r.synthetic_per_real > 0) for r in cells(s)}
            for s in (spec, cpu)]
    assert arms[0] == arms[1] and len(cells(spec)) == 2 * 17
    tasks = stage_tasks(spec, resolve_runs(spec, tmp_path), tmp_path)
    gen = [t for t in tasks if t.kind == "generate"]
    assert len(gen) == 9 and {t.payload.k for t in gen} == {20}  # 10 per real, a filter keeps half of 20
    assert all(t.deps == [f"finetune/per-class/pool/{t.name.rsplit('/', 1)[1]}"] for t in gen)
    (filt,) = [t for t in tasks if t.kind == "filter"]
    assert set(filt.deps) == {t.name for t in gen} and "filter/0" in tasks[-1].deps


def test_cpu_preset_rehearsal_answers_both_questions(tmp_path):
    """augment_vs_synthetic_cpu rehearsed end to end: the filter stage (after generation, cached),
    runs drawing from their views, the records' augmentation, and both report sections."""
    from dermsynth.analysis.report import build_report
    from dermsynth.experiments.results import load_records
    from dermsynth.experiments.runner import run_experiment

    spec = _rehearsal("augment_vs_synthetic_cpu", tmp_path)
    # fp32 pinned: the precision probe's choice depends on the machine's load, and with it the
    # accuracies this test compares across tables
    spec = spec.model_copy(update={"base": {**spec.base, "precision": "fp32"}})
    res = run_experiment(spec, tmp_path, workers=1)
    assert res.failed == 0 and res.runs == 17
    logs = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "tasks").glob("*.json")}
    filt = [x for x in logs.values() if x["kind"] == "filter"]
    assert len(filt) == 1 and all(x["end"] <= filt[0]["start"] for x in logs.values() if x["kind"] == "generate")
    store = tmp_path / "synthetic"
    man = read_manifest(store)
    records = load_records(tmp_path)
    for rec in records:
        sp = rec["spec"]
        assert rec["augmentation"]["name"] == (sp["augment"] or "paper")
        if sp["synthetic_filter"] != "none":
            view = json.loads(view_path(store, sp["synthetic_filter"], sp["filter_keep"]).read_text())
            assert sp["filter_digest"] == view["digest"] and set(view["kept_ids"]) < set(man["synth_id"])
            assert rec["n_train_synthetic"] == 2 * rec["n_train_real"]
    assert next(r for r in records if r["spec"]["augment"] == "randaugment")["augmentation"]["policy"]["num_ops"] == 2
    html = build_report(tmp_path).read_text()
    assert "Synthetic data vs augmentation" in html and "Filtered vs unfiltered synthetic data" in html
    assert "Images kept per class and method" in html
    by_aug = pd.read_csv(tmp_path / "augmentation_comparisons.csv")
    assert sorted(by_aug["augment"]) == sorted(AUGMENTATIONS)  # with vs without synthetic, every arm
    # one comparison, one verdict: these rows are the main table's, with its family's adjusted p
    # (adjusted again within this smaller table, the same comparison could get another verdict)
    main = pd.read_csv(tmp_path / "comparisons.csv")
    main = main[main["synthetic_filter"].fillna("none") == "none"] if "synthetic_filter" in main else main
    key = [c for c in ("augment", "method", "n_real", "synthetic_per_real") if c in main and c in by_aug]
    same = by_aug.merge(main, on=key, suffixes=("", "_main"))
    assert len(same) == len(by_aug) and (same["verdict"] == same["verdict_main"]).all()
    assert np.allclose(same["p_seed_bh"], same["p_seed_bh_main"], equal_nan=True)
    assert (same["family"] == same["family_main"]).all()
    alone = pd.read_csv(tmp_path / "synthetic_vs_augmentation_alone.csv")
    assert sorted(alone["augmentation_alone"]) == sorted(set(AUGMENTATIONS) - {"none", "paper"})
    assert alone["strongest_alone"].any()
    filt_comp = pd.read_csv(tmp_path / "filter_comparisons.csv")
    assert sorted(filt_comp["synthetic_filter"]) == ["confidence", "novelty", "similarity"]
    assert (filt_comp["acc_unfiltered"] == by_aug.loc[by_aug["augment"] == "paper", "acc_synthetic"].iloc[0]).all()
    kept = pd.read_csv(tmp_path / "filter_kept.csv")
    assert len(kept) == 3 * 9 and (kept["kept"] * 2 == kept["available"]).all()
    for name in ("augmentation_vs_synthetic", "filtered_vs_unfiltered"):
        assert (tmp_path / "figures" / f"{name}.png").exists()
    # resumed: nothing runs again, the filter's scores are reused
    scores = store / "views" / "scores.parquet"
    before = scores.stat().st_mtime_ns
    assert run_experiment(spec, tmp_path, workers=1).ran == 0
    assert scores.stat().st_mtime_ns == before


def test_a_remedy_study_reports_synthetic_data_against_the_remedies_and_the_gaps(reader_store_split, demo_root,
                                                                                  tmp_path):
    """Issue 38: a real-only arm with focal loss beside synthetic data from the tiny quickstart's
    store (in this file, which builds that store anyway): the report compares synthetic data with
    each remedy (seed-aware, one BH family) and every arm's gaps (their own family), and draws
    group accuracy per arm."""
    import pandas as pd

    from dermsynth.analysis.report import build_report
    from dermsynth.experiments.runner import run_experiment
    from dermsynth.experiments.spec import validate_experiment

    store, _ = reader_store_split
    spec = validate_experiment({
        "name": "remedies", "seeds": 2, "recognisability": False,
        "base": dict(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4,
                     image_size=16, backbone="test_resnet", max_epochs=2, patience=1, n_real=4, threads=1,
                     cache_dir=str(demo_root / "cache"), synthetic_store=str(store)),
        "grid": {"synthetic_per_real": [0, 1], "loss": ["cross_entropy", "focal"]},
        "main_comparison": {"arm": {"synthetic_per_real": 1}, "outcome": "worst_class_recall"},
    })
    res = run_experiment(spec, tmp_path, workers=1)
    assert res.failed == 0 and res.runs == 8
    html = build_report(tmp_path).read_text()
    assert "Synthetic data vs the imbalance remedies" in html and "Did this arm narrow the gap?" in html
    assert "Did an arm narrow the gap? (gap test" in html  # the summary counts the decided gap comparisons
    vs = pd.read_csv(tmp_path / "remedy_comparisons.csv")
    assert set(vs["remedy"]) == {"focal loss (γ = 2)"}
    assert vs["family"].nunique() == 1 and "p_seed_bh" in vs and vs["verdict"].notna().all()
    gaps = pd.read_csv(tmp_path / "gap_comparisons.csv")
    main = gaps[gaps["family"].str.startswith("the main comparison")]
    assert len(main) == 1 and main["outcome"].iloc[0] == "worst_class_recall"  # named before running: alone
    assert main["comparison"].iloc[0].endswith("vs real only (none)") and gaps["family"].nunique() == 2
    assert "Main comparison, named before running" in html
    assert any(c.endswith("vs no remedy") for c in gaps["comparison"])
    assert any(" alone" in c for c in gaps["comparison"]) and any("vs real only" in c for c in gaps["comparison"])
    cells = pd.read_csv(tmp_path / "gap_outcomes.csv")
    assert len(cells) and (cells["ci_low"].isna() | (cells["ci_low"] <= cells["mean"])).all()



def test_by_error_follows_a_real_only_pilot_on_validation_and_never_reads_a_test_image(store_and_split, demo_root,
                                                                                     tmp_path):
    """Issue 38: ``by_error`` trains the run without synthetic data, measures its error per class
    on the validation images only (every test image's file is broken here: reading one fails),
    and gives each class a share of the same budget in proportion to that error."""
    from dermsynth.train.allocation import error_fill
    from dermsynth.train.pilot import pilot_for, pilot_path, pilot_spec
    from dermsynth.train.run import real_subset, synthetic_counts, training_table
    from dermsynth.train.spec import ALLOCATION_CAP, real_only_fields

    store, split = store_and_split
    spec = RunSpec(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4,
                   image_size=16, backbone="test_resnet", max_epochs=2, patience=1, n_real=4, threads=1, seed=0,
                   cache_dir=str(tmp_path / "cache"), synthetic_store=str(store), synthetic_per_real=1,
                   synthetic_allocation="by_error")
    used = pilot_for(spec, split)
    train = training_table(spec, split, errors=used["errors"])
    pilot = json.loads(pilot_path(spec).read_text())
    assert set(pilot["id"]) == set(split.val["id"].astype(str))  # validation only, every one of them
    assert pilot["run_id"] == spec.model_copy(update=real_only_fields()).run_id() == pilot_spec(spec).run_id()
    counts = synthetic_counts(spec, train, used)
    errors = counts["pilot"]["errors"]
    assert set(errors) == set(split.val["label"]) and sum(counts["by_class"].values()) == len(real_subset(spec, split))
    real = real_subset(spec, split)
    expected = error_fill(real["label"].value_counts().to_dict(), errors, len(real), ALLOCATION_CAP)
    assert counts["by_class"] == {c: n for c, n in sorted(expected.items()) if n}
    worst, best = max(errors, key=errors.get), min(errors, key=errors.get)
    if errors[worst] > errors[best]:
        assert expected[worst] > expected[best]
    again = training_table(spec, split, errors=pilot_for(spec, split)["errors"])  # read back, not trained again
    assert again["id"].tolist() == train["id"].tolist()
    assert RunSpec(synthetic_allocation="by_error").run_id() != RunSpec().run_id()
    assert pilot_path(spec.model_copy(update={"content_digest": "other-bytes"})) != pilot_path(spec)  # new images
