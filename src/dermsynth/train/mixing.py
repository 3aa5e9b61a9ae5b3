"""Building a training set: real images plus exactly k synthetic images per real image.

The paper's protocol links every synthetic image to its real reference and adds synthetic
images only together with their reference, so "10 synthetic per real" means exactly that
and synthetic data derived from an image outside the training subset never enters it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dermsynth.data.splits import hash_unit
from dermsynth.data.synthetic_store import check_manifest
from dermsynth.errors import DataError


def add_synthetic(real: pd.DataFrame, manifest: pd.DataFrame, k: int, seed: int,
                  methods: list[str] | None = None) -> pd.DataFrame:
    """``real`` plus k synthetic rows per real image, chosen deterministically by seed.

    Only synthetic images whose ``ref_id`` is in ``real`` are eligible; a reference with
    fewer than k images raises an error naming it. Returned rows carry ``synthetic`` and
    ``ref_id`` columns.
    """
    if k < 0:
        raise DataError(f"synthetic_per_real={k} must be ≥ 0")
    out = real.assign(synthetic=False, ref_id=real["id"])
    if k == 0:
        return out
    check_manifest(manifest)
    pool = manifest if methods is None else manifest[manifest["method"].isin(methods)]
    pool = pool[pool["ref_id"].isin(set(real["id"]))]
    counts = pool["ref_id"].value_counts()
    short = [(r, int(counts.get(r, 0))) for r in real["id"] if counts.get(r, 0) < k]
    if short:
        ref, have = short[0]
        raise DataError(
            f"reference image {ref!r} has {have} synthetic images{' of ' + str(methods) if methods else ''}"
            f" but synthetic_per_real={k} was asked ({len(short)} references are short); generate more "
            "with `dermsynth generator sample --per-image K` or lower synthetic_per_real")
    order = pool.assign(_key=[hash_unit(f"{seed}:{s}") for s in pool["synth_id"]])
    chosen = order.sort_values(["ref_id", "_key"]).groupby("ref_id", sort=False).head(k)
    missing_files = [p for p in chosen["path"] if not Path(p).exists()]
    if missing_files:
        raise DataError(f"synthetic image file {missing_files[0]} listed in the manifest is missing "
                             f"({len(missing_files)} missing); re-run `dermsynth generator sample` to restore them")
    ref_meta = real.set_index("id")
    synth = pd.DataFrame({
        "id": chosen["synth_id"].astype(str).to_numpy(),
        "path": chosen["path"].astype(str).to_numpy(),
        "label": chosen["label"].astype(str).to_numpy(),
        "skin_type": ref_meta.loc[chosen["ref_id"], "skin_type"].to_numpy(),
        "skin_group": ref_meta.loc[chosen["ref_id"], "skin_group"].to_numpy(),
        "synthetic": True,
        "ref_id": chosen["ref_id"].astype(str).to_numpy(),
        "method": chosen["method"].astype(str).to_numpy(),
    })
    return pd.concat([out, synth], ignore_index=True)


def duplicate_classes(train: pd.DataFrame, factors: dict[str, int]) -> pd.DataFrame:
    """Up-sample chosen classes by repeating their real images (the imbalance control)."""
    parts = [train]
    for label, factor in factors.items():
        if label not in set(train["label"]):
            raise DataError(f"duplicate_classes names class {label!r}, absent from the training set")
        rows = train[(train["label"] == label) & (~train.get("synthetic", False))]
        for _ in range(max(0, int(factor) - 1)):
            parts.append(rows)
    return pd.concat(parts, ignore_index=True)
