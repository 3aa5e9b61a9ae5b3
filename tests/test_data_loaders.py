from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth.data.ddi import load_ddi
from dermsynth.data.demo import DEMO_CLASSES, load_demo, render
from dermsynth.data.fitzpatrick import F17K9, load_fitzpatrick17k
from dermsynth.data.folder import load_folder
from dermsynth.data.registry import load_dataset
from dermsynth.data.table import COLUMNS, skin_group_of
from dermsynth.errors import DermsynthError


def test_demo_schema_and_counts(demo_table):
    assert list(demo_table.columns[: len(COLUMNS)]) == COLUMNS
    assert demo_table["label"].value_counts().to_dict() == {c: 30 for c in DEMO_CLASSES}
    assert set(demo_table["skin_group"].dropna()) <= {"I-II", "III-IV", "V-VI"}
    assert demo_table["skin_type"].between(1, 6).all()
    # several photos per patient exist, and patient ids never cross classes
    per_patient = demo_table.groupby("patient").size()
    assert per_patient.max() >= 2
    assert (demo_table.groupby("patient")["label"].nunique() == 1).all()


def test_demo_is_deterministic_and_nested(tmp_path):
    a = render(3, 7, size=32, seed=1)
    b = render(3, 7, size=32, seed=1)
    c = render(3, 7, size=32, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    small = load_demo(tmp_path, n_per_class=3, size=32, seed=1)
    big = load_demo(tmp_path, n_per_class=5, size=32, seed=1)
    assert set(small["id"]) < set(big["id"])
    merged = small.merge(big, on="id")
    assert (merged["skin_type_x"] == merged["skin_type_y"]).all()


def test_demo_classes_differ_in_colour_statistics(demo_table):
    # a weak but real check that classes are not identical noise: mean colours differ
    means = {}
    for label, rows in demo_table.groupby("label"):
        means[label] = np.mean([np.asarray(Image.open(p), dtype=float).mean((0, 1)) for p in rows["path"]], 0)
    spread = np.std(np.stack(list(means.values())), axis=0)
    assert spread.max() > 3.0


def test_skin_group_mapping():
    assert [skin_group_of(t) for t in (1, 2, 3, 4, 5, 6)] == ["I-II", "I-II", "III-IV", "III-IV", "V-VI", "V-VI"]
    assert skin_group_of(None) is None and skin_group_of(-1) is None


def test_fitzpatrick_real_copy(f17k_root):
    table, report = load_fitzpatrick17k(f17k_root)
    assert report.present == 2860 and report.missing == 13717
    assert len(table) == 2860
    assert sum(report.missing_per_class.values()) == 13717
    top9 = load_fitzpatrick17k(f17k_root, "top-9")[0]
    assert top9["label"].nunique() == 9 and top9["label"].value_counts().min() >= 122
    # seven of the F17k-9 classes have no image in this copy: refused by name, never a 2-class study
    with pytest.raises(DermsynthError, match=r"7 of the 9 requested.*'psoriasis' \(0 present, 653 missing\)"):
        load_fitzpatrick17k(f17k_root, "f17k9")
    assert set(F17K9) >= {"psoriasis"}
    three = load_fitzpatrick17k(f17k_root, label_column="three_partition_label")[0]
    assert set(three["label"]) == {"benign", "malignant", "non-neoplastic"}


def _write_f17k(root, rows):
    (root / "images").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "fitzpatrick17k.csv", index=False)


def test_fitzpatrick_reports_missing_and_unknown_class(tmp_path):
    rows = [dict(md5hash=f"{i:032x}", fitzpatrick_scale=(i % 6) + 1, fitzpatrick_centaur=1,
                 label="psoriasis" if i < 3 else "acne", nine_partition_label="x",
                 three_partition_label="non-neoplastic", qc="", url=f"http://x/{i}", url_alphanum="")
            for i in range(5)]
    _write_f17k(tmp_path, rows)
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"{0:032x}.jpg")
    table, rep = load_fitzpatrick17k(tmp_path)
    assert len(table) == 1 and rep.missing_per_class == {"acne": 2, "psoriasis": 2}
    with pytest.raises(DermsynthError, match="unknown class"):
        load_fitzpatrick17k(tmp_path, ["eczema"])


def test_fitzpatrick_missing_csv_names_file(tmp_path):
    with pytest.raises(DermsynthError, match="fitzpatrick17k.csv"):
        load_fitzpatrick17k(tmp_path)


def test_ddi_loader(tmp_path):
    rows = []
    for i in range(6):
        name = f"{i:06d}.png"
        Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(tmp_path / name)
        rows.append(dict(DDI_ID=i, DDI_file=name, skin_tone=[12, 34, 56][i % 3], malignant=i % 2 == 0,
                         disease="x"))
    pd.DataFrame(rows).to_csv(tmp_path / "ddi_metadata.csv", index=False)
    t = load_ddi(tmp_path)
    assert set(t["label"]) == {"benign", "malignant"}
    assert set(t["prompt_label"]) == {"x"}  # prompts name the disease, not "malignant"
    assert t["skin_group"].tolist()[:3] == ["I-II", "III-IV", "V-VI"]
    bad = pd.DataFrame(rows).assign(skin_tone=99)
    bad.to_csv(tmp_path / "ddi_metadata.csv", index=False)
    with pytest.raises(DermsynthError, match="skin_tone"):
        load_ddi(tmp_path)


def test_ddi_finds_images_in_the_archive_folder_and_refuses_missing_ones(tmp_path, caplog):
    """Images in the archive's own sub-folder are found; a listed file that is absent is an
    error naming it (not 'present' rows that later fail one by one)."""
    images = tmp_path / "ddidiversedermatologyimages"
    images.mkdir()
    rows = []
    for i in range(4):
        Image.new("RGB", (8, 8)).save(images / f"{i:06d}.png")
        rows.append(dict(DDI_ID=i, DDI_file=f"{i:06d}.png", skin_tone=12, malignant=False, disease="melanocytic-nevi"))
    Image.new("RGB", (8, 8)).save(images / "stray.png")
    pd.DataFrame(rows).to_csv(tmp_path / "ddi_metadata.csv", index=False)
    with caplog.at_level("WARNING"):
        t = load_ddi(tmp_path)
    assert len(t) == 4 and all(Path(p).parent == images for p in t["path"])
    assert set(t["prompt_label"]) == {"melanocytic nevi"}
    assert "stray.png" in caplog.text and "no patient column" in caplog.text
    (images / "000003.png").unlink()
    with pytest.raises(DermsynthError, match=r"1 of 4 DDI images.*000003.png"):
        load_ddi(tmp_path)


def test_folder_and_csv_loaders(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8)).save(tmp_path / cls / f"{i}.png")
    t = load_folder(tmp_path)
    assert t["label"].value_counts().to_dict() == {"a": 2, "b": 2}
    pd.DataFrame({"path": ["a/0.png", "b/1.png"], "label": ["a", "b"], "skin_type": [2, 5]}).to_csv(
        tmp_path / "list.csv", index=False)
    t2 = load_folder(tmp_path, tmp_path / "list.csv")
    assert t2["skin_group"].tolist() == ["I-II", "V-VI"]
    with pytest.raises(DermsynthError, match="no images"):
        load_folder(tmp_path / "a")
    with pytest.raises(DermsynthError, match="imagenet.*unknown.*demo, fitzpatrick17k, ddi, folder"):
        load_dataset("imagenet", tmp_path)
