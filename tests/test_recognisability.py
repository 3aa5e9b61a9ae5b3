"""A classifier trained on real images scores synthetic images per method; the report shows it."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import binomtest

from dermsynth.analysis.report_sections import analysis_sections
from dermsynth.audits.recognisability import recognisability
from dermsynth.data.demo import DEMO_CLASSES, render
from dermsynth.data.splits import make_split
from dermsynth.data.synthetic_store import append_manifest, open_store
from dermsynth.errors import DermsynthError
from dermsynth.train.spec import RunSpec


def _store(tmp_path, split, rows_for, fitted: bool = False):
    """A store of 6 images per class and method. ``fitted``: the images are training-pool images
    (which the real-only classifier was trained on); else fresh renders of each class."""
    store = open_store(tmp_path / "store", "test", "planted", "fp0")
    rows = []
    for method, label_of in rows_for.items():
        (store / "images" / method).mkdir(parents=True)
        for c, name in enumerate(DEMO_CLASSES):
            pool = split.pool[split.pool["label"] == name]
            for k in range(6):
                rel = f"images/{method}/{c}-{k}.png"
                image = (Image.open(pool.iloc[k]["path"]).convert("RGB") if fitted
                         else Image.fromarray(render(c, 900 + k, 32, seed=11)))
                image.save(store / rel)
                rows.append(dict(synth_id=f"{method}-{c}-{k}", ref_id=pool.iloc[k]["id"], label=label_of(c),
                                 method=method, path=rel))
    append_manifest(store, rows)
    return store


@pytest.fixture(scope="module")
def scored(demo_table, tmp_path_factory):
    """Training-pool images under their own labels (faithful) and the same images with each label
    moved to the next class (mislabelled).

    Why pool images: what is under test is the audit's accounting (a row per method, chance, the
    binomial p, Wilson CIs, per-class rows, the files and the report), not how well a tiny
    network generalises from 21 images per class — which hinged on the CPU's rounding. The
    classifier has fitted the pool images (20 epochs, lr 3e-3, no early stop before the best
    validation epoch), so faithful images are recognised far above chance and mislabelled ones
    almost never, whatever the CPU's arithmetic (measured under fp32 and bf16, 1 and 2 threads:
    docs/benchmarks.md)."""
    tmp = tmp_path_factory.mktemp("recog")
    split = make_split(demo_table, 5, 4)
    store = _store(tmp, split, {"faithful": lambda c: DEMO_CLASSES[c],
                                "mislabelled": lambda c: DEMO_CLASSES[(c + 1) % len(DEMO_CLASSES)]}, fitted=True)
    spec = RunSpec(dataset="demo", image_size=32, backbone="test_resnet", max_epochs=20, patience=20, lr=3e-3,
                   batch_size=16, cache_dir=str(tmp / "cache"))
    table = recognisability(split, store, spec, tmp / "out")
    return table.set_index("group"), tmp / "out", split, store, spec


def test_faithful_images_are_recognised_and_mislabelled_ones_are_not(scored):
    table, *_ = scored
    assert list(table.index) == ["real test", "faithful", "mislabelled"]
    assert (table["n"] == [len(DEMO_CLASSES) * 5, 54, 54]).all()
    chance = 1 / len(DEMO_CLASSES)
    faithful, mislabelled = table.loc["faithful", "accuracy"], table.loc["mislabelled", "accuracy"]
    assert faithful > 3 * chance and table.loc["faithful", "p_above_chance"] < 1e-6
    assert mislabelled < chance and table.loc["mislabelled", "p_above_chance"] > 0.05
    # the same images under two labellings: no image can be right under both, so the two counts
    # are the two sides of one comparison (a sign test on them, at the 0.1 % level)
    k_f, k_m = round(faithful * 54), round(mislabelled * 54)
    assert k_f + k_m <= 54
    assert binomtest(k_f, k_f + k_m, 0.5, alternative="greater").pvalue < 1e-3
    assert (table["ci_low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["ci_high"]).all()


def test_files_per_class_and_report_section(scored):
    table, out, *_ = scored
    csv = pd.read_csv(out / "recognisability.csv")
    per_class = csv[csv["class"] != "all"]
    assert len(per_class) == 2 * len(DEMO_CLASSES)
    faithful = per_class[per_class["group"] == "faithful"]
    assert np.isclose(faithful["accuracy"].mean(), table.loc["faithful", "accuracy"])  # 6 per class: equal weights
    info = json.loads((out / "recognisability.json").read_text())
    assert info["n_train_real"] > 0 and info["backbone"] == "test_resnet" and info["n_synthetic"] == 108
    report_dir = out.parent / "experiment"
    assert not any("show their class" in s.title for s in analysis_sections(report_dir))
    (report_dir / "analysis" / "recognisability").mkdir(parents=True)
    (report_dir / "analysis" / "recognisability" / "recognisability.json").write_text(
        (out / "recognisability.json").read_text())
    html = "".join(s.title + s.html for s in analysis_sections(report_dir))
    assert "Do synthetic images show their class?" in html and "mislabelled" in html


def test_store_with_a_class_the_data_set_lacks_is_refused(scored, tmp_path):
    _, _, split, _, spec = scored
    store = _store(tmp_path, split, {"odd": lambda c: "not-a-condition" if c == 0 else DEMO_CLASSES[c]})
    with pytest.raises(DermsynthError, match="not-a-condition"):
        recognisability(split, store, spec)
