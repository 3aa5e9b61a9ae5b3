"""Fitzpatrick 17k: the public metadata CSV plus a folder of ``<md5hash>.jpg`` images.

Many of the public URLs are dead, so a real user always has only part of the images;
rows without an image are reported per class, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dermsynth.data.table import make_table
from dermsynth.errors import DataError, DermsynthError

CSV_NAME = "fitzpatrick17k.csv"
CSV_COLUMNS = ["md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label",
               "nine_partition_label", "three_partition_label", "qc", "url", "url_alphanum"]
# The paper's F17k-9: the nine most common conditions of the full data set.
F17K9 = [
    "psoriasis", "squamous cell carcinoma", "lichen planus", "basal cell carcinoma",
    "allergic contact dermatitis", "lupus erythematosus", "sarcoidosis",
    "neutrophilic dermatoses", "photodermatoses",
]


@dataclass
class LoadReport:
    """What a loader found: present and missing images per class."""

    present: int = 0
    missing: int = 0
    missing_per_class: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)


def read_metadata(root: str | Path) -> pd.DataFrame:
    """Read and check the public metadata CSV under ``root``."""
    path = Path(root) / CSV_NAME
    if not path.exists():
        raise DermsynthError(
            f"{path} not found: put the public Fitzpatrick 17k metadata CSV ({CSV_NAME}) in "
            f"{root} (images go in {Path(root) / 'images'})")
    meta = pd.read_csv(path, dtype={"md5hash": str, "url": str})
    missing = [c for c in ("md5hash", "fitzpatrick_scale", "label") if c not in meta.columns]
    if missing:
        raise DermsynthError(f"{path} lacks the columns {missing}; expected {CSV_COLUMNS}")
    return meta


def select_classes(counts: pd.Series, classes: str | list[str] | None,
                   known: set[str] | None = None) -> list[str]:
    """Resolve a class selection: ``None``/"all", "f17k9", "top-N" or an explicit list.

    ``counts`` are images present per class (for top-N); ``known`` every valid class name.
    """
    known = set(counts.index) if known is None else known
    if classes is None or classes == "all":
        return list(counts.index)
    if isinstance(classes, str):
        if classes.lower() == "f17k9":
            return list(F17K9)
        if classes.lower().startswith("top-"):
            try:
                n = int(classes.split("-", 1)[1])
            except ValueError:
                raise DermsynthError(f"classes={classes!r}: use 'top-N' with an integer N") from None
            return list(counts.sort_values(ascending=False, kind="stable").index[:n])
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise DermsynthError(f"unknown class(es) {unknown}; known classes include "
                             f"{list(counts.sort_values(ascending=False).index[:12])}")
    return list(classes)


def load_fitzpatrick17k(root: str | Path, classes: str | list[str] | None = None,
                        label_column: str = "label") -> tuple[pd.DataFrame, LoadReport]:
    """Load the image table of the images present under ``root/images``.

    ``label_column`` may be ``label`` (114 conditions), ``nine_partition_label`` or
    ``three_partition_label`` (benign / malignant / non-neoplastic).
    """
    root = Path(root)
    meta = read_metadata(root)
    if label_column not in meta.columns:
        raise DermsynthError(f"label_column={label_column!r} is not a column of {root / CSV_NAME}")
    image_dir = root / "images"
    present_files = {p.stem for p in image_dir.glob("*.jpg")} if image_dir.exists() else set()
    meta = meta.assign(_present=meta["md5hash"].isin(present_files))
    report = LoadReport(present=int(meta["_present"].sum()), missing=int((~meta["_present"]).sum()))
    if classes is None or classes == "all":
        chosen = list(meta[label_column].dropna().unique())
    else:
        chosen = select_classes(meta.loc[meta["_present"], label_column].value_counts(), classes,
                                known=set(meta[label_column].dropna()))
    meta = meta[meta[label_column].isin(chosen)]
    explicit = classes not in (None, "all") and not (isinstance(classes, str) and classes.lower().startswith("top-"))
    present_counts = meta.loc[meta["_present"], label_column].value_counts()
    empty = [c for c in chosen if present_counts.get(c, 0) == 0]
    if explicit and empty:
        missing = meta.loc[~meta["_present"], label_column].value_counts()
        raise DataError(
            f"{len(empty)} of the {len(chosen)} requested classes have no image under {image_dir}: "
            + ", ".join(f"{c!r} (0 present, {int(missing.get(c, 0))} missing)" for c in empty)
            + ". Download them (`dermsynth data download`) or choose classes that are present "
            f"(present: {', '.join(f'{c} {n}' for c, n in present_counts.items())}); "
            "a study never runs on a silently smaller set of classes.")
    report.missing_per_class = {str(k): int(v) for k, v in
                                meta.loc[~meta["_present"], label_column].value_counts().items()}
    present = meta[meta["_present"]]
    table = pd.DataFrame({
        "id": present["md5hash"].astype(str),
        "path": [str(image_dir / f"{h}.jpg") for h in present["md5hash"]],
        "label": present[label_column].astype(str),
        "skin_type": present["fitzpatrick_scale"],
        "condition": present["label"].astype(str),
        "three_partition_label": present.get("three_partition_label"),
    })
    return make_table(table, "fitzpatrick17k"), report


def reference_rows(root: str | Path) -> pd.DataFrame:
    """Every row of the metadata CSV as ``id, label, skin_type``, its image present or not: a
    released synthetic image names its reference by md5 whether or not this copy has the photo."""
    meta = read_metadata(root)
    skin = pd.to_numeric(meta["fitzpatrick_scale"], errors="coerce")
    return pd.DataFrame({"id": meta["md5hash"].astype(str), "label": meta["label"].astype(str),
                         "skin_type": skin.where(skin.between(1, 6))})
