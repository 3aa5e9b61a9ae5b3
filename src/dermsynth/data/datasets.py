"""One entry point for every data set: ``load_dataset(name, root, ...)`` → image table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dermsynth.errors import DermsynthError

DATASETS = ("demo", "fitzpatrick17k", "ddi", "folder")


def load_dataset(name: str, root: str | Path | None = None, *, classes=None, csv=None,
                 n_per_class: int = 200, size: int = 64, seed: int = 0,
                 label_column: str = "label") -> pd.DataFrame:
    """Load an image table; see each loader for its options."""
    if name == "demo":
        from dermsynth.data.demo import load_demo

        cls = None
        if classes not in (None, "all"):
            cls = classes if isinstance(classes, list) else [c.strip() for c in str(classes).split(",")]
        return load_demo(root or default_demo_root(), n_per_class=n_per_class, size=size, seed=seed,
                         classes=cls)
    if root is None:
        raise DermsynthError(f"dataset {name!r} needs --root DIR (where its files are)")
    if name == "fitzpatrick17k":
        from dermsynth.data.fitzpatrick import load_fitzpatrick17k

        return load_fitzpatrick17k(root, classes, label_column=label_column)[0]
    if name == "ddi":
        from dermsynth.data.ddi import load_ddi

        return load_ddi(root)
    if name == "folder":
        from dermsynth.data.folder import load_folder

        table = load_folder(root, csv)
        if classes not in (None, "all"):
            keep = classes if isinstance(classes, list) else str(classes).split(",")
            table = table[table["label"].isin(keep)].reset_index(drop=True)
        return table
    raise DermsynthError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def default_demo_root() -> Path:
    return Path(".dermsynth-cache") / "demo"
