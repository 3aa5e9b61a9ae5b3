"""Cleaning as a stage of a study: pHash/embedding duplicate clusters become split groups (cached),
the paper presets run on cleaned data, and the held-out guard compares content, not only ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from dermsynth.analysis.data_notes import cleaning_sections
from dermsynth.data.cleaning import CleaningSpec
from dermsynth.data.leakage import audit
from dermsynth.data.splits import SplitSpec, load_split, make_split
from dermsynth.experiments.presets import preset_path
from dermsynth.experiments.rehearsal import rehearse
from dermsynth.experiments.runner import run_experiment
from dermsynth.experiments.spec import cells, load_experiment, validate_experiment

CLASSES = ("psoriasis", "lichen planus", "sarcoidosis")


@pytest.fixture(scope="module")
def dup_folder(demo_table, tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """A folder data set (3 classes × 20 images) with 6 planted near-duplicates: re-saved, resized
    copies of other images of the same class under new names."""
    root = tmp_path_factory.mktemp("dupfolder")
    pairs = []
    for label in CLASSES:
        rows = demo_table[demo_table["label"] == label].iloc[:18]
        (root / label).mkdir()
        for r in rows.itertuples():
            shutil.copy(r.path, root / label / Path(r.path).name)
        for r in rows.iloc[:2].itertuples():
            copy = root / label / f"copy-{Path(r.path).stem}.png"
            Image.open(r.path).convert("RGB").resize((48, 48)).save(copy)
            pairs.append((f"{label}/{Path(r.path).stem}", f"{label}/{copy.stem}"))
    return root, pairs


def test_cleaning_makes_duplicates_one_split_group_and_is_cached(dup_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the cleaning cache (.dermsynth-cache/cleaning) of this test only
    root, pairs = dup_folder
    plain = load_split(SplitSpec(dataset="folder", root=str(root), n_test=4, n_val=3, split_seed=1,
                                 cleaning=False)).table
    where = dict(zip(plain["id"], plain["split"], strict=True))
    assert any(where[a] != where[b] for a, b in pairs)  # uncleaned, some copies straddle the split
    spec = SplitSpec(dataset="folder", root=str(root), n_test=4, n_val=3, split_seed=1,
                     cleaning=CleaningSpec(embedding="pixels:8"))
    split = load_split(spec)
    group = dict(zip(split.table["id"], split.table["group"], strict=True))
    assert all(group[a] == group[b] for a, b in pairs)
    assert split.cleaning["near_pairs"] + split.cleaning["exact_pairs"] >= len(pairs)
    (cached,) = (tmp_path / ".dermsynth-cache" / "cleaning").glob("*.json")
    stamp = cached.stat().st_mtime_ns
    assert load_split(spec).digest() == split.digest() and cached.stat().st_mtime_ns == stamp  # read, not redone


def test_experiment_cleans_as_a_stage_and_resumes(dup_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root, _ = dup_folder
    spec = validate_experiment({
        "name": "clean", "seeds": 1, "recognisability": False,
        "base": {"dataset": "folder", "root": str(root), "n_test": 4, "n_val": 3, "n_real": 2, "image_size": 16,
                 "backbone": "test_resnet", "max_epochs": 1, "threads": 1, "cache_dir": str(tmp_path / "cache"),
                 "save_checkpoint": False, "cleaning": {"embedding": "pixels:8"}}})
    out = tmp_path / "out"
    assert run_experiment(spec, out).ran == 1
    log = json.loads((out / "tasks" / "clean_0.json").read_text())
    assert log["kind"] == "clean"
    assert json.loads((out / "stage_timings.json").read_text())["clean"] > 0
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert record["spec"]["cleaning"]["embedding"] == "pixels:8"
    (section,) = cleaning_sections(out)
    assert "near-duplicate pairs" in section.text and "one split group" in section.text
    again = run_experiment(spec, out)
    assert again.ran == 0 and again.failed == 0  # cached clusters: the same split, the same run ids


def test_paper_presets_clean_their_data_and_uncleaned_ids_stay():
    for name in ("fig3_paper", "fig4_paper", "imbalance_paper", "skin_type_paper", "augment_vs_synthetic_paper"):
        spec = load_experiment(preset_path(name))
        assert all(r.cleaning is not None and r.cleaning.embedding for r in cells(spec)), name
        assert all(r.cleaning.embedding == "pixels:8" for r in cells(rehearse(spec, seeds=1, smaller=True)))
    cpu = cells(load_experiment(preset_path("fig3_cpu")))[0]
    assert cpu.cleaning is None and "cleaning" not in json.dumps(cpu.model_dump(exclude_none=True))


def test_held_out_guard_compares_content_not_only_ids(demo_table, tmp_path):
    split = make_split(demo_table, 5, 4)
    held = split.test.iloc[0]
    copy = tmp_path / "reupload.png"
    Image.open(held["path"]).convert("RGB").save(copy)  # the same picture under another id, in the pool
    row = {**held.to_dict(), "id": "reupload", "path": str(copy), "split": "pool", "group": "reupload",
           "patient": "reupload"}
    split.table.loc[len(split.table)] = row
    assert audit(split, training_ids={"x-not-an-image-id"}) == []
    (problem,) = audit(split, training_ids={"reupload"})
    assert "near-duplicate" in problem and held["id"] in problem
