"""A Fitzpatrick class with only part of its images on disk: the run record and the report say
so, and a class too small for the split is refused with its counts — never a silent shrink."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth.analysis.data_notes import missing_image_warnings
from dermsynth.data.splits import SplitSpec, load_split
from dermsynth.errors import SplitError
from dermsynth.train.run import run_training
from dermsynth.train.spec import RunSpec


@pytest.fixture(scope="module")
def partial_f17k(tmp_path_factory):
    """30 listed images per class; 'lichen planus' has only 12 of them on disk."""
    root = tmp_path_factory.mktemp("f17k")
    (root / "images").mkdir()
    rows, rng = [], np.random.default_rng(0)
    for c, (label, present) in enumerate((("psoriasis", 30), ("lichen planus", 12))):
        for i in range(30):
            md5 = f"{c:02d}{i:030x}"
            rows.append(dict(md5hash=md5, fitzpatrick_scale=i % 6 + 1, fitzpatrick_centaur=1, label=label,
                             nine_partition_label="x", three_partition_label="non-neoplastic", qc="", url="",
                             url_alphanum=""))
            if i < present:
                Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / "images" / f"{md5}.jpg")
    pd.DataFrame(rows).to_csv(root / "fitzpatrick17k.csv", index=False)
    return root


def test_partial_class_is_recorded_and_reported(partial_f17k, tmp_path):
    spec = RunSpec(dataset="fitzpatrick17k", root=str(partial_f17k), n_test=4, n_val=3, n_real=2, image_size=16,
                   backbone="test_resnet", max_epochs=1, threads=1, save_checkpoint=False,
                   cache_dir=str(tmp_path / "cache"))
    assert load_split(spec.split_spec()).missing_per_class == {"lichen planus": 18}
    record = run_training(spec, tmp_path)
    assert record["missing_images"] == {"lichen planus": 18}
    (warning,) = missing_image_warnings([record])
    assert "lichen planus: 18 missing" in warning and "psoriasis" not in warning


def test_class_too_small_for_the_split_is_refused_with_its_counts(partial_f17k):
    with pytest.raises(SplitError, match=r"'lichen planus' has 12 of 30 \(18 missing"):
        load_split(SplitSpec(dataset="fitzpatrick17k", root=str(partial_f17k), n_test=6, n_val=6))
    split = load_split(SplitSpec(dataset="fitzpatrick17k", root=str(partial_f17k), n_test=5, n_val=5))
    with pytest.raises(SplitError, match="18 of its images are missing on disk"):
        split.train_subset(3, seed=0)
