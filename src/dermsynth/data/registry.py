"""One entry point for every data set: ``load_dataset(name, root, ...)`` → image table.

Loaders register themselves here, so the CLI's help and the error for an unknown name list
exactly the data sets that exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from dermsynth.errors import DataError
from dermsynth.registry import Registry

Loader = Callable[..., pd.DataFrame]
DATASETS: Registry[Loader] = Registry("dataset")


def _class_list(classes) -> list[str] | None:
    if classes in (None, "all"):
        return None
    return classes if isinstance(classes, list | tuple) else [c.strip() for c in str(classes).split(",") if c.strip()]


@DATASETS.register("demo")
def _demo(root, *, classes=None, n_per_class=200, size=64, seed=0, skin_weights=None, **_) -> pd.DataFrame:
    from dermsynth.data.demo import load_demo

    cls = _class_list(classes)
    return load_demo(root or default_demo_root(), n_per_class=n_per_class, size=size, seed=seed,
                     classes=list(cls) if cls else None, skin_weights=skin_weights)


@DATASETS.register("fitzpatrick17k")
def _fitzpatrick(root, *, classes=None, label_column="label", **_) -> pd.DataFrame:
    from dermsynth.data.fitzpatrick import load_fitzpatrick17k

    table, report = load_fitzpatrick17k(root, list(classes) if isinstance(classes, tuple) else classes,
                                        label_column=label_column)
    table.attrs["missing_per_class"] = report.missing_per_class  # read by load_split: never dropped silently
    return table


@DATASETS.register("ddi")
def _ddi(root, **_) -> pd.DataFrame:
    from dermsynth.data.ddi import load_ddi

    return load_ddi(root)


@DATASETS.register("folder")
def _folder(root, *, classes=None, csv=None, **_) -> pd.DataFrame:
    from dermsynth.data.fitzpatrick import select_classes
    from dermsynth.data.folder import load_folder

    table = load_folder(root, csv)
    if classes in (None, "all"):
        return table
    # one reading of --classes for every data set: top-N, a list, and a typo is an error, not an empty table
    keep = select_classes(table["label"].value_counts(), list(classes) if isinstance(classes, tuple) else classes)
    return table[table["label"].isin(keep)].reset_index(drop=True)


def load_dataset(name: str, root: str | Path | None = None, *, classes=None, csv=None,
                 n_per_class: int = 200, size: int = 64, seed: int = 0,
                 label_column: str = "label", skin_weights=None) -> pd.DataFrame:
    """Load an image table; see each loader for its options (``skin_weights``: the demo's)."""
    loader = DATASETS.get(name)
    if root is None and name != "demo" and not (name == "folder" and csv is not None):
        raise DataError(f"dataset {name!r} needs --root DIR (where its files are)")
    extra = {} if skin_weights is None else {"skin_weights": skin_weights}
    return loader(root, classes=classes, csv=csv, n_per_class=n_per_class, size=size, seed=seed,
                  label_column=label_column, **extra)


def default_demo_root() -> Path:
    return Path(".dermsynth-cache") / "demo"
