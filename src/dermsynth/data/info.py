"""Summaries of a data set: what is present, missing and unreadable."""

from __future__ import annotations

from pathlib import Path

from dermsynth.data.images import load_rgb
from dermsynth.data.registry import load_dataset
from dermsynth.errors import DataError, ImageDecodeError


def dataset_info(name: str, root: str | Path | None, classes=None, check_images: bool = False) -> dict:
    """Counts per class and skin type; missing rows (Fitzpatrick 17k) and unreadable files."""
    missing, missing_per_class = 0, {}
    if name == "fitzpatrick17k":
        if root is None:
            raise DataError("dataset 'fitzpatrick17k' needs --root DIR (the folder holding fitzpatrick17k.csv "
                            "and images/; `dermsynth data download` fills it)")
        from dermsynth.data.fitzpatrick import load_fitzpatrick17k

        table, report = load_fitzpatrick17k(root, classes)
        missing, missing_per_class = report.missing, report.missing_per_class
    else:
        table = load_dataset(name, root, classes=classes)
    unreadable = []
    if check_images:
        for img_id, path in zip(table["id"], table["path"], strict=True):
            try:
                load_rgb(path)
            except ImageDecodeError as exc:
                unreadable.append({"id": img_id, "path": path, "reason": exc.reason})
    skin = table["skin_type"].value_counts(dropna=False)
    return {
        "dataset": name,
        "present": int(len(table)),
        "missing": int(missing),
        "classes": int(table["label"].nunique()),
        "per_class": {str(k): int(v) for k, v in table["label"].value_counts().items()},
        "missing_per_class": missing_per_class,
        "skin_types": {("unknown" if str(k) == "<NA>" else str(k)): int(v) for k, v in skin.items()},
        "skin_groups": {str(k): int(v) for k, v in table["skin_group"].value_counts().items()},
        "unreadable": unreadable,
    }
