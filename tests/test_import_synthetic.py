"""Issue 37: the authors' released images (and dermsynth's own exports) as synthetic stores —
both released layouts and spellings, ``label = "all"``, every broken sample a named count,
streaming selection, resumable imports."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dermsynth.data import synthetic_import
from dermsynth.data.synthetic_import import Selection, import_synthetic
from dermsynth.data.synthetic_store import read_manifest, read_provenance, training_set_known
from released_shards import released_sample, truncate, write_shard

REFS = pd.DataFrame({"id": [f"{i:032x}" for i in range(6)],
                     "label": ["lichen planus"] * 3 + ["psoriasis"] * 3, "skin_type": [1, 2, 3, 4, 5, 6]})
LICHEN, PSORIASIS = list(REFS["id"][:3]), list(REFS["id"][3:])


@pytest.fixture
def shards(tmp_path):
    """A 1M-layout shard per label and method, one of a model of all classes, one train-layout shard."""
    one_m = write_shard(tmp_path / "shards" / "shard-lichen-planus-finetune-inpaint-inpaint-00000.tar",
                        [released_sample(m, "lichen-planus", "finetune_inpaint", "inpaint", g, seed=10 * i + g)
                         for i, m in enumerate(LICHEN) for g in range(2)])
    every = write_shard(tmp_path / "shards" / "shard-all-finetune-text-to-image-text-to-image-00000.tar",
                        [released_sample(m, "all", "finetune_text_to_image", "text-to-image", 0, "generations2",
                                         seed=100 + i) for i, m in enumerate(PSORIASIS)])
    train = write_shard(tmp_path / "shards" / "shard-pretrained-inpaint-00000.tar",
                        [released_sample(m, "psoriasis", "pretrained-inpaint", "inpaint-outpaint", 3, layout="train",
                                         seed=200 + i) for i, m in enumerate(PSORIASIS)])
    return [str(one_m), str(every), str(train)]


def test_both_released_layouts_become_one_store_per_variant(shards, tmp_path):
    res = import_synthetic(shards, tmp_path / "released", REFS)
    assert res["read"] == res["imported"] == 12 and not res["skipped"] and not res["truncated"]
    fine, pre = read_manifest(tmp_path / "released" / "finetune"), read_manifest(tmp_path / "released" / "pretrained")
    assert len(fine) == 9 and len(pre) == 3
    assert sorted(fine.groupby("method").size().items()) == [("inpaint", 6), ("text-to-image", 3)]
    assert set(pre["method"]) == {"in-then-outpaint"}  # the release's inpaint-outpaint
    # label "all": the class comes from the reference; the released label is kept as written
    t2i = fine[fine["method"] == "text-to-image"]
    assert set(t2i["label"]) == {"psoriasis"} and set(t2i["ref_id"]) == set(PSORIASIS)
    assert set(fine.loc[fine["method"] == "inpaint", "label"]) == {"lichen planus"}
    row = pre.iloc[0]
    assert row["generation_num"] == "03" and row["tag"] == "generations1" and row["source_shard"] == shards[2]
    assert row["source_key"].endswith(row["ref_id"]) and row["strength"] == 0.97 and row["steps"] == 50
    assert row["prompt"] == "An image of psoriasis, a skin disease" and row["skin_type"] in (4, 5, 6)
    for variant in ("finetune", "pretrained"):
        store = tmp_path / "released" / variant
        assert not training_set_known(store) and read_provenance(store)["variant"] == variant
    again = import_synthetic(shards, tmp_path / "released", REFS)  # finished shards are not read again
    assert again["read"] == 12 and len(read_manifest(tmp_path / "released" / "finetune")) == 9


def test_every_broken_sample_is_a_named_count(tmp_path):
    good = [released_sample(m, "lichen-planus", "finetune_inpaint", "inpaint", g, seed=g + 5 * i)
            for i, m in enumerate(LICHEN) for g in range(3)]
    no_json = ("nojson", {"png": good[0][1]["png"]})
    bad_png = (good[1][0] + "x", {"png": b"\x89PNG\r\n\x1a\nnot really", "json": good[1][1]["json"]})
    stranger = released_sample("f" * 32, "lichen-planus", "finetune_inpaint", "inpaint", 9)
    wrong = released_sample(LICHEN[0], "psoriasis", "finetune_inpaint", "inpaint", 8)
    odd = released_sample(LICHEN[1], "lichen-planus", "sketch_inpaint", "inpaint", 7)
    shard = write_shard(tmp_path / "shard-lichen-planus-finetune-inpaint-inpaint-00000.tar",
                        [no_json, bad_png, stranger, wrong, odd, *good])
    cut = truncate(write_shard(tmp_path / "shard-lichen-planus-finetune-inpaint-inpaint-00001.tar",
                               [released_sample(m, "lichen-planus", "finetune_inpaint", "inpaint", g + 4, seed=50 + g)
                                for m in LICHEN for g in range(4)]), 0.6)
    res = import_synthetic([str(shard), str(cut)], tmp_path / "out", REFS)
    assert res["skipped"] == {"no json": 1, "png does not decode": 1, "reference md5 not in the data set's table": 1,
                              "label disagrees with the reference's class": 1, "unknown method 'sketch_inpaint'": 1}
    assert list(res["truncated"]) == [str(cut)] and "ends mid-way" in res["truncated"][str(cut)]
    n_cut = len(read_manifest(tmp_path / "out" / "finetune")) - len(good)
    assert 0 < n_cut < 12 and res["imported"] == len(good) + n_cut  # what came before the cut is in


def test_selection_streams_only_what_a_study_needs(shards, tmp_path):
    res = import_synthetic(shards, tmp_path / "sel", REFS, Selection(labels={"psoriasis"}, variants={"finetune"}))
    assert res["imported"] == 3 and res["not_selected"] == {"label": 6, "variant": 3}
    res = import_synthetic(shards, tmp_path / "cap", REFS, Selection(max_per_reference=1, methods={"inpaint"}))
    assert res["imported"] == 3 and res["not_selected"] == {"max-per-reference": 3, "method": 6}
    res = import_synthetic(shards, tmp_path / "tag", REFS, Selection(tags={"generations2"}))
    assert res["imported"] == 3 and set(read_manifest(tmp_path / "tag" / "finetune")["tag"]) == {"generations2"}


def test_a_killed_import_resumes_with_nothing_lost_or_doubled(shards, tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic_import, "BATCH", 2)
    calls = {"n": 0}
    real_write = synthetic_import.files.write_bytes

    def dies_at_the_seventh(path, data):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # the process killed mid-shard, between two commits
        return real_write(path, data)

    monkeypatch.setattr(synthetic_import.files, "write_bytes", dies_at_the_seventh)
    with pytest.raises(KeyboardInterrupt):
        import_synthetic(shards, tmp_path / "out", REFS)
    monkeypatch.setattr(synthetic_import.files, "write_bytes", real_write)
    res = import_synthetic(shards, tmp_path / "out", REFS)
    clean = import_synthetic(shards, tmp_path / "clean", REFS)
    assert res["read"] == clean["read"] == 12 and res["stores"]["finetune"]["images"] == 9
    for variant in ("finetune", "pretrained"):
        parts = pd.concat(pd.read_parquet(p) for p in (tmp_path / "out" / variant / "manifest").glob("*.parquet"))
        assert parts["synth_id"].is_unique  # no row written twice
        assert set(parts["synth_id"]) == set(read_manifest(tmp_path / "clean" / variant)["synth_id"])


def test_cli_expands_patterns_and_names_a_pattern_that_matches_nothing(shards, tmp_path):
    from typer.testing import CliRunner

    from dermsynth.cli import app

    root = tmp_path / "f17k"
    root.mkdir()
    REFS.rename(columns={"id": "md5hash", "skin_type": "fitzpatrick_scale"}).to_csv(root / "fitzpatrick17k.csv",
                                                                                    index=False)
    folder = tmp_path / "shards"
    res = CliRunner().invoke(app, ["data", "import-synthetic", str(folder / "shard-*-inpaint-*.tar"),
                                   str(folder / "shard-all-{finetune,nothing}-text-to-image-text-to-image-00000.tar"),
                                   "--out", str(tmp_path / "o"), "--root", str(root), "--json"])
    assert res.exit_code == 3 and "shard-all-nothing" in res.output  # the brace's second branch names nothing
    res = CliRunner().invoke(app, ["data", "import-synthetic", str(folder / "shard-*.tar"), "--out",
                                   str(tmp_path / "o"), "--root", str(root), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["imported"] == 12 and out["stores"]["finetune"]["images"] == 9 and out["bytes_written"] > 0


def test_an_exported_store_reads_back_in_hugging_face_datasets_and_import_synthetic(shards, tmp_path, monkeypatch):
    """Item 4: a store shared as shards + card is a data set others can load, and an export of
    released images keeps saying that its generator's training set is unknown."""
    from datasets import load_dataset

    from dermsynth.data.synthetic_export import export_synthetic

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import_synthetic(shards, tmp_path / "released", REFS)
    store = tmp_path / "released" / "finetune"
    res = export_synthetic(store, tmp_path / "shared", shard_size=4)
    ds = load_dataset("webdataset", data_files={"train": res["shards"]}, split="train", cache_dir=str(tmp_path / "hf"))
    man = read_manifest(store).set_index("synth_id")
    assert ds.num_rows == len(man) == 9
    for row in ds:
        assert row["json"]["ref_id"] == man.loc[row["__key__"], "ref_id"] and row["png"].size == (32, 32)
    card = (tmp_path / "shared" / "README.md").read_text()
    assert "UNKNOWN" in card and not (tmp_path / "shared" / "generator_training_ids.txt").exists()
    back = import_synthetic(res["shards"], tmp_path / "back", REFS)
    assert back["imported"] == 9 and not training_set_known(tmp_path / "back")
