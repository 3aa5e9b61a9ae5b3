"""A run's training set: its real subset (n_real per class, per-class overrides or the whole
pool), the synthetic images its allocation places beside them, and any duplication."""

from __future__ import annotations

import pandas as pd

from dermsynth.data.splits import Split
from dermsynth.data.synthetic_store import read_manifest
from dermsynth.errors import ConfigError
from dermsynth.train.mixing import add_synthetic, duplicate_classes
from dermsynth.train.spec import ALLOCATION_CAP, RunSpec


def training_table(spec: RunSpec, split: Split, manifest: pd.DataFrame | None = None,
                   errors: dict[str, float] | None = None) -> pd.DataFrame:
    """Real subset (with per-class overrides), synthetic images, duplication.

    ``manifest``: the store's manifest when the caller has read it already (many cells, one store).
    ``errors``: a ``by_error`` allocation's pilot errors (train/pilot.py: ``allocation_errors``).
    """
    real = real_subset(spec, split)
    if spec.synthetic_per_real > 0:
        if not spec.synthetic_store:
            raise ConfigError("synthetic_per_real > 0 needs synthetic_store (a folder written by "
                              "`dermsynth generator sample`)")
        manifest = read_manifest(spec.synthetic_store) if manifest is None else manifest
        targets = real if spec.synthetic_classes is None else real[real["label"].isin(spec.synthetic_classes)]
        if spec.synthetic_filter != "none":
            from dermsynth.train.synthetic_views import filtered_manifest

            manifest = filtered_manifest(manifest, spec, targets)
        mixed = add_synthetic(targets, manifest, spec.synthetic_per_real, spec.seed, spec.synthetic_methods,
                              spec.synthetic_allocation, ALLOCATION_CAP, errors)
        rest = real[~real["id"].isin(targets["id"])].assign(synthetic=False, ref_id=lambda d: d["id"])
        train = pd.concat([mixed, rest], ignore_index=True)
    else:
        train = real.assign(synthetic=False, ref_id=real["id"])
    if spec.duplicate_classes:
        train = duplicate_classes(train, spec.duplicate_classes)
    if spec.repeat_real > 1:
        train = duplicate_classes(train, dict.fromkeys(sorted(set(train["label"])), spec.repeat_real))
    return train


def real_subset(spec: RunSpec, split: Split) -> pd.DataFrame:
    """The real training images of a run: whole pool, n_real per class, or per-class overrides."""
    if spec.use_all_pool:
        return split.pool.reset_index(drop=True)
    if spec.class_n_real:
        return _per_class_subset(spec, split)
    return split.train_subset(spec.n_real, spec.seed)


def _per_class_subset(spec: RunSpec, split: Split) -> pd.DataFrame:
    unknown = set(spec.class_n_real) - set(split.pool["label"])
    if unknown:
        raise ConfigError(f"class_n_real names unknown class(es) {sorted(unknown)}")
    parts = []
    for n in sorted({spec.n_real, *spec.class_n_real.values()}):
        sub = split.train_subset(n, spec.seed)
        labels = [c for c in sub["label"].unique() if spec.class_n_real.get(c, spec.n_real) == n]
        parts.append(sub[sub["label"].isin(labels)])
    return pd.concat(parts, ignore_index=True)
