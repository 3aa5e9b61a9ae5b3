"""Where a run's synthetic images go: how many each real reference gets.

Every allocation spends the same budget, ``k × the real images``, so that comparing allocations
compares where the images go, not how many there are. ``per_real`` gives each reference k (the
paper). The balancing allocations water-fill: the smallest classes (or skin-type groups) get
images first until they reach the next smallest, and so on; once every class is level the rest
is spread evenly. So with a budget large enough every class ends with the same number of
training images, and a small budget goes to the rarest classes only. A class's images are
split over its references as evenly as possible (which ones get one more is decided by the
seed), and no reference gets more than ``cap`` images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermsynth.data.splits import hash_unit


def strata(real: pd.DataFrame, allocation: str) -> pd.Series:
    """The stratum of each real image that ``allocation`` balances (its class or skin-type group)."""
    if allocation == "balance_skin_types":
        return real["skin_group"].astype(object).where(real["skin_group"].notna(), "unknown").astype(str)
    return real["label"].astype(str)


def water_fill(sizes: dict[str, int], budget: int, cap: int) -> dict[str, int]:
    """Images per stratum: the smallest first until level, at most ``cap`` per real image, summing
    to ``budget`` (less only where every stratum is at its cap)."""
    names = sorted(sizes)
    n = np.array([sizes[s] for s in names], dtype=float)
    most = cap * n

    def given(level: float) -> np.ndarray:
        return np.clip(level - n, 0.0, most)

    budget = min(budget, int(most.sum()))
    lo, hi = 0.0, float(n.max() + most.max() + 1)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if given(mid).sum() < budget else (lo, mid)
    share = given(hi)
    counts = np.minimum(np.floor(share), most).astype(int)
    left = budget - int(counts.sum())
    for i in np.argsort(-(share - counts), kind="stable"):  # the largest remainders take the last images
        if left <= 0:
            break
        if counts[i] < most[i]:
            counts[i] += 1
            left -= 1
    return dict(zip(names, counts.tolist(), strict=True))


def quotas(real: pd.DataFrame, k: int, allocation: str, seed: int, cap: int) -> pd.Series:
    """Synthetic images per reference (indexed by the real image's id)."""
    if allocation == "per_real":
        return pd.Series(k, index=real["id"].astype(str))
    key = strata(real, allocation)
    per_stratum = water_fill(key.value_counts().to_dict(), k * len(real), cap * k)
    out = {}
    for name, rows in real.groupby(key.to_numpy()):
        ids = sorted(rows["id"].astype(str), key=lambda i: hash_unit(f"{seed}:alloc:{i}"))
        base, extra = divmod(per_stratum[name], len(ids))
        out.update({i: base + (j < extra) for j, i in enumerate(ids)})
    return pd.Series(out).reindex(real["id"].astype(str))
