"""Issue 37, items 2–3: a study on imported (released) images never trains on a synthetic image
of a held-out reference and never calls an unknown generator training set clean; the
conservative split; the preset's plan and its rehearsal's stand-in store."""

from __future__ import annotations

import json

import pytest

from dermsynth.data.leakage import audit_store, store_account
from dermsynth.data.splits import SplitSpec, held_out_ids, load_split
from dermsynth.data.synthetic_store import read_manifest, referenced_ids
from dermsynth.experiments.released_rehearsal import released_stand_in

BASE = {"dataset": "demo", "classes": ["psoriasis", "lichen planus"], "demo_n_per_class": 40, "demo_size": 16}


@pytest.fixture(scope="module")
def released(tmp_path_factory, demo_root):
    """Half the demo patients' images as released-layout shards (2 per reference), imported."""
    folder = tmp_path_factory.mktemp("released")
    base = {**BASE, "root": str(demo_root)}
    fields = released_stand_in(base, ["text-to-image", "inpaint"], 2, "finetune", folder)
    return base, fields["synthetic_store"], folder / "store"


def spec(base: dict, **extra) -> SplitSpec:
    return SplitSpec(dataset="demo", root=base["root"], classes=tuple(base["classes"]),
                     demo_n_per_class=base["demo_n_per_class"], demo_size=base["demo_size"], n_test=5, n_val=5,
                     **extra)


def test_held_out_references_are_excluded_and_counted_and_the_training_set_is_unknown(released):
    base, store, _ = released
    split = load_split(spec(base))
    man = read_manifest(store)
    held = man["ref_id"].isin(held_out_ids(split))
    assert held.sum() > 0  # the plain split holds out some images the release was made from
    assert audit_store(split, store) == []  # made elsewhere, before this split: excluded, not a violation
    account = store_account(split, store)
    assert account["excluded_held_out_reference"] == int(held.sum()) and account["images"] == len(man)
    assert not account["training_set_known"] and account["training_set"].startswith("UNKNOWN")


def test_the_conservative_split_holds_out_only_unreferenced_images_and_trains_on_references(released):
    base, store, stores = released
    referenced = referenced_ids(stores)
    split = load_split(spec(base, held_out_avoids_store=str(stores)))
    assert not held_out_ids(split) & referenced
    assert set(split.pool["id"]) <= referenced  # every training image has synthetic images to add
    assert store_account(split, store)["excluded_held_out_reference"] == 0
    assert spec(base).model_dump().keys() - {"held_out_avoids_store"} == \
        spec(base, held_out_avoids_store="x").model_dump().keys() - {"held_out_avoids_store"}


def test_the_leakage_audit_says_unproven_never_clean(released):
    from typer.testing import CliRunner

    from dermsynth.cli import app

    base, store, _ = released
    res = CliRunner().invoke(app, ["audit", "leakage", "--dataset", "demo", "--root", base["root"], "--classes",
                                   ",".join(base["classes"]), "--n-test", "5", "--n-val", "5", "--store", store])
    assert res.exit_code == 0, res.output
    assert "UNPROVEN" in res.output and "CLEAN" not in res.output and "held_out_avoids_store" in res.output
    assert "excluded from training" in res.output


def test_the_released_preset_plans_the_classifier_grid_alone_and_rehearses_on_a_stand_in(tmp_path, monkeypatch):
    from dermsynth.experiments.plan import plan
    from dermsynth.experiments.presets import preset_path
    from dermsynth.experiments.rehearsal import rehearse
    from dermsynth.experiments.spec import load_experiment

    monkeypatch.chdir(tmp_path)  # the rehearsal's demo data renders under ./.dermsynth-cache
    paper = load_experiment(preset_path("fig3_released"))
    assert paper.generator is None and paper.base["held_out_avoids_store"] == "data/released"
    stages = plan(paper)
    assert list(stages["stage"]) == ["train classifiers"] and stages["what"].iloc[0].startswith("240 runs")
    stand_in = rehearse(paper, cache_dir=str(tmp_path / "cache"))
    store = stand_in.base["synthetic_store"]
    assert store.startswith(str(tmp_path))
    assert stand_in.base["held_out_avoids_store"] == str(tmp_path / "released-stand-in" / "store")
    man = read_manifest(store)
    assert set(man["method"]) == {"inpaint", "in-then-outpaint", "text-to-image"}
    assert set(man["backend"]) == {"released"}
    assert man.groupby(["ref_id", "method"]).size().min() == 10  # k = 10 per reference, as the grid asks
    assert json.loads((tmp_path / "released-stand-in" / "store" / "import-state.json").read_text())["shards"]


def test_a_study_on_released_images_reports_their_provenance(released, tmp_path, monkeypatch):
    from dermsynth.analysis.report import build_report
    from dermsynth.experiments.runner import run_experiment
    from dermsynth.experiments.spec import ExperimentSpec

    base, store, stores = released
    monkeypatch.chdir(tmp_path)
    spec = ExperimentSpec(name="released", seeds=[0], base={
        **{k: base[k] for k in ("dataset", "root", "classes", "demo_n_per_class", "demo_size")}, "n_test": 5,
        "n_val": 5, "synthetic_store": store, "held_out_avoids_store": str(stores), "backbone": "test_resnet",
        "image_size": 16, "max_epochs": 1, "synthetic_methods": ["text-to-image"]},
        grid={"n_real": [2], "synthetic_per_real": [0, 2]})
    result = run_experiment(spec, tmp_path / "study")
    assert not result.failed
    html = build_report(tmp_path / "study").read_text()
    assert "Synthetic data provenance" in html and "UNKNOWN" in html and "CLEAN" not in html
