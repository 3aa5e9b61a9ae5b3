"""A whole tiny study: generator → store → grid → leakage audit → statistics → report."""

import json

import pandas as pd
import pytest

from dermsynth.analysis.summary import cell_summary, plain_summary, synthetic_comparisons
from dermsynth.data.leakage import audit
from dermsynth.data.splits import make_split
from dermsynth.data.synthetic_store import read_manifest, read_training_ids
from dermsynth.errors import LeakageError
from dermsynth.experiments.results import load_records, results_table
from dermsynth.experiments.runner import run_experiment
from dermsynth.experiments.spec import validate_experiment
from dermsynth.experiments.study_path import locate_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tiny_quickstart):
    return tiny_quickstart


def test_study_outputs(study):
    spec, out, report = study
    records = load_records(out)
    assert len(records) == 2 * 3 * 2  # n_real × (baseline + 2 methods) × seeds
    man = read_manifest(out / "synthetic")
    assert set(man["method"]) == {"inpaint", "text-to-image"}
    # one fine-tuned generator per class, and the images they learnt from are all in the training pool
    assert len(list((out / "finetuned").glob("*/model/config.json"))) == 9
    # each image names its own class's model; the store names the family
    assert all(m.endswith(f"finetuned/{lab.replace(' ', '_')}/model") for m, lab in zip(man["model"], man["label"],
                                                                                          strict=True))
    assert json.loads((out / "synthetic" / "store.json").read_text())["model"] == "builtin:per-class:pool"
    learnt = read_training_ids(out / "synthetic")  # pre-training pool ∪ per-class fine-tuning images
    assert learnt and learnt == read_training_ids(out / "generator" / "model")
    # every synthetic image used by a run is linked to a real image of that run
    for rec in records:
        if rec["n_train_synthetic"]:
            assert rec["n_train_synthetic"] == 2 * rec["n_train_real"]
    html = report.read_text()
    assert "data:image/png;base64" in html and "fig3_accuracy_vs_nreal" not in html
    assert "With vs without synthetic data" in html and "Real and synthetic samples" in html
    assert (out / "figures" / "fig3_accuracy_vs_nreal.png").exists()
    assert (out / "figures" / "fig3_accuracy_vs_nreal.svg").exists()
    comps = pd.read_csv(out / "comparisons.csv")
    assert len(comps) == 4 and comps["p_bh"].between(0, 1).all()
    assert (comps["p_bh"] >= comps["p_value"] - 1e-12).all()


def test_summary_tables_and_sentences(study):
    _, out, _ = study
    table = results_table(out)
    cells = cell_summary(table, records=load_records(out))
    assert (cells["runs"] == 2).all() and (cells["paper_ci_low"] <= cells["accuracy"]).all()
    # the default CI counts the seeds too (t with 1 df at 2 seeds): wider than the paper's Wald CI;
    # unknown (NaN) exactly where the two seeds' accuracies tie
    assert (cells["ci_low"].isna() == (cells["sd"] == 0)).all()
    tested = cells.dropna(subset=["ci_low"])
    assert (tested["ci_low"] <= tested["accuracy"]).all()
    assert (tested["ci_high"] - tested["ci_low"] >= tested["paper_ci_high"] - tested["paper_ci_low"]).all()
    assert cell_summary(table)["ci_low"].isna().all()  # without per-image predictions: unknown, not the Wald CI
    comps = synthetic_comparisons(table, load_records(out), reps=50)
    lines = plain_summary(comps)
    assert any("adding 2 synthetic per real" in s.lower() for s in lines)


def test_quickstart_rerun_reuses_everything(study):
    spec, out, _ = study
    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    res = run_experiment(spec.model_copy(update={"base": {**spec.base, "cache_dir": str(out / "cache")}}), out)
    assert res.ran == 0
    assert before == {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}


def test_leakage_audit_catches_planted_leaks(study, demo_table):
    _, out, _ = study
    rec = load_records(out)[0]
    split = make_split(demo_table, 5, 4)
    man = read_manifest(out / "synthetic")
    assert audit(split, man) == []
    test_id = split.test["id"].iloc[0]
    planted = pd.concat([man, man.iloc[:1].assign(synth_id="leak", ref_id=test_id)])
    problems = audit(split, planted, training_ids=[split.val["id"].iloc[0]])
    assert any("leak" in p and test_id in p for p in problems)
    assert any("generator training image" in p for p in problems)
    t = split.table.copy()
    t.loc[t["split"] == "pool", "patient"] = t.loc[t["split"] == "test", "patient"].iloc[0]
    from dermsynth.data.splits import Split

    assert any("straddles" in p for p in audit(Split(t)))
    # the experiment's own store (the fixture's study is a copy: the record names where it first ran)
    store = rec["spec"]["synthetic_store"]
    assert store is None or locate_store(store, out) == out / "synthetic"


def test_experiment_refuses_leaky_store(study, demo_table, tmp_path):
    spec, out, _ = study
    split = make_split(demo_table, 5, 4)
    store = tmp_path / "leaky"
    import shutil

    shutil.copytree(out / "synthetic", store)
    man = pd.read_parquet(sorted((store / "manifest").glob("*.parquet"))[0])
    man["ref_id"] = split.test["id"].iloc[0]
    man["synth_id"] = man["synth_id"] + "-leak"
    man.to_parquet(store / "manifest" / "part-zzz.parquet")
    leaky = validate_experiment({**json.loads(spec.model_dump_json()), "generator": None,
                                 "base": {**spec.base, "synthetic_store": str(store)}})
    with pytest.raises(LeakageError, match="held-out reference"):
        run_experiment(leaky, tmp_path / "e")


def test_the_same_study_from_scratch_gives_identical_results(tiny_quickstart, tmp_path):
    """Reproducible on one machine: the quickstart-sized study run again from nothing (its own
    generator, store, cache and runs) gives the same results.csv, whatever the machine's load — the
    generator's budget is in steps and "auto" precision follows the CPU, not a timing."""
    from dermsynth.cli.quickstart import run_quickstart

    spec, out, _ = tiny_quickstart
    run_quickstart(tmp_path / "again", spec=spec)
    first, again = pd.read_csv(out / "results.csv"), pd.read_csv(tmp_path / "again" / "results.csv")
    # where the study lies (its run ids name their store's folder) and clocks; everything else equal
    where = {"run_id", "cache_dir", "synthetic_store", "root", "wall_seconds", "images_per_second"}
    cols = [c for c in first.columns if c not in where]
    order = ["n_real", "synthetic_per_real", "synthetic_methods", "seed"]
    pd.testing.assert_frame_equal(first[cols].sort_values(order).reset_index(drop=True),
                                  again[cols].sort_values(order).reset_index(drop=True))
    assert (first["synthetic_fingerprint"].dropna().nunique() > 0
            and set(first["synthetic_fingerprint"].dropna()) == set(again["synthetic_fingerprint"].dropna()))
