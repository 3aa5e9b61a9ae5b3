"""Building a training set: real images plus exactly k synthetic images per real image (or as
many, placed by an allocation).

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
from dermsynth.train.allocation import quotas


def add_synthetic(real: pd.DataFrame, manifest: pd.DataFrame, k: int, seed: int,
                  methods: list[str] | None = None, allocation: str = "per_real", cap: int = 4,
                  errors: dict[str, float] | None = None) -> pd.DataFrame:
    """``real`` plus k synthetic rows per real image, chosen deterministically by seed — or, with a
    balancing ``allocation``, the same number of rows placed where that allocation puts them
    (train/allocation.py; at most ``cap`` × k per reference; ``errors``, a pilot's validation error per
    stratum, for a ``by_error`` allocation).

    Only synthetic images whose ``ref_id`` is in ``real`` are eligible; a reference with
    fewer images than it is given raises an error naming it. Returned rows carry ``synthetic``
    and ``ref_id`` columns.
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
    want = quotas(real, k, allocation, seed, cap, errors)
    short = [(r, int(counts.get(r, 0)), int(want[str(r)])) for r in real["id"] if counts.get(r, 0) < want[str(r)]]
    if short:
        ref, have, asked = short[0]
        raise DataError(
            f"reference image {ref!r} has {have} synthetic images{' of ' + str(methods) if methods else ''}"
            f" but {asked} were asked (synthetic_per_real={k}, synthetic_allocation={allocation}; {len(short)} "
            "references are short); generate more with `dermsynth generator sample --per-image K` or lower "
            "synthetic_per_real")
    order = pool.assign(_key=[hash_unit(f"{seed}:{s}") for s in pool["synth_id"]]).sort_values(["ref_id", "_key"])
    rank = order.groupby("ref_id", sort=False).cumcount().to_numpy()
    chosen = order[rank < order["ref_id"].astype(str).map(want).to_numpy()]
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
