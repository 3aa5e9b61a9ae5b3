"""Where a run's synthetic images go: how many each real reference gets.

Every allocation spends the same budget, ``k × the real images``, so that comparing allocations
compares where the images go, not how many there are. ``per_real`` gives each reference k (the
paper). The balancing allocations water-fill: the smallest classes (or skin-type groups) get
images first until they reach the next smallest, and so on; once every class is level the rest
is spread evenly. So with a budget large enough every class ends with the same number of
training images, and a small budget goes to the rarest classes only. A class's images are
split over its references as evenly as possible (which ones get one more is decided by the
seed), and no reference gets more than ``cap`` images.

``by_error`` (classes) and ``by_error_skin_types`` give each stratum a share of the budget
proportional to a real-only pilot model's validation error on it (train/pilot.py): the pilot
says where the classifier fails, the budget goes there. A stratum at its cap passes the rest on
to the others, in proportion to their errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermsynth.data.splits import hash_unit
from dermsynth.errors import ConfigError
from dermsynth.train.spec import ALLOCATION_CAP, RunSpec

BALANCING = ("balance_classes", "balance_skin_types")
BY_ERROR = ("by_error", "by_error_skin_types")


def over_skin_types(allocation: str) -> bool:
    """Whether ``allocation`` places images by skin-type group (else by class)."""
    return allocation.endswith("skin_types")


def strata(real: pd.DataFrame, allocation: str) -> pd.Series:
    """The stratum of each real image that ``allocation`` balances (its class or skin-type group)."""
    if over_skin_types(allocation):
        return real["skin_group"].astype(object).where(real["skin_group"].notna(), "unknown").astype(str)
    return real["label"].astype(str)


def error_fill(sizes: dict[str, int], errors: dict[str, float], budget: int, cap: int) -> dict[str, int]:
    """Images per stratum in proportion to ``errors`` (a stratum missing from it, or not finite,
    counts at the mean error), at most ``cap`` per real image, summing to ``budget`` (less only where every
    stratum is at its cap). With no error anywhere the budget is spread like per_real."""
    names = sorted(sizes)
    n = np.array([sizes[s] for s in names], dtype=float)
    known = [float(errors[s]) for s in names if s in errors and np.isfinite(float(errors[s]))]
    mean = float(np.mean(known)) if known else 0.0
    given_errors = (float(errors.get(s, mean)) for s in names)
    weight = np.array([max(e, 0.0) if np.isfinite(e) else mean for e in given_errors])
    most = cap * n
    budget = min(budget, int(most.sum()))
    share = np.zeros_like(n)
    open_ = np.ones(len(n), dtype=bool)
    while open_.any():  # proportional shares; strata over their cap are fixed there and the rest re-shared
        left = budget - share[~open_].sum()
        w = np.where(open_, weight, 0.0)
        if w.sum() <= 0:  # the strata left have no error: they share the rest like per_real
            w = np.where(open_, n, 0.0)
        trial = left * w / w.sum()
        over = open_ & (trial >= most)
        if not over.any():
            share[open_] = trial[open_]
            break
        share[over] = most[over]
        open_ &= ~over
    return _round_to(share, most, budget, names)


def _round_to(share: np.ndarray, most: np.ndarray, budget: int, names: list[str]) -> dict[str, int]:
    """Whole images: the floors, then the largest remainders take the last images, never past ``most``."""
    counts = np.minimum(np.floor(share + 1e-9), most).astype(int)
    left = budget - int(counts.sum())
    for i in np.argsort(-(share - counts), kind="stable"):
        if left <= 0:
            break
        if counts[i] < most[i]:
            counts[i] += 1
            left -= 1
    return dict(zip(names, counts.tolist(), strict=True))


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
    return _round_to(given(hi), most, budget, names)


def quotas(real: pd.DataFrame, k: int, allocation: str, seed: int, cap: int,
           errors: dict[str, float] | None = None) -> pd.Series:
    """Synthetic images per reference (indexed by the real image's id). ``errors``: the pilot's
    validation error per stratum, which a ``by_error`` allocation needs."""
    if allocation == "per_real":
        return pd.Series(k, index=real["id"].astype(str))
    key = strata(real, allocation)
    sizes = key.value_counts().to_dict()
    if allocation in BY_ERROR:
        if errors is None:
            raise ConfigError(f"synthetic_allocation={allocation} needs the pilot's validation errors")
        per_stratum = error_fill(sizes, errors, k * len(real), cap * k)
    else:
        per_stratum = water_fill(sizes, k * len(real), cap * k)
    out = {}
    for name, rows in real.groupby(key.to_numpy()):
        ids = sorted(rows["id"].astype(str), key=lambda i: hash_unit(f"{seed}:alloc:{i}"))
        base, extra = divmod(per_stratum[name], len(ids))
        out.update({i: base + (j < extra) for j, i in enumerate(ids)})
    return pd.Series(out).reindex(real["id"].astype(str))


def most_per_reference(spec: RunSpec) -> int:
    """The most images one reference of a run may get: k under ``per_real``, the cap (ALLOCATION_CAP
    × k) under any other allocation."""
    return spec.synthetic_per_real * (1 if spec.synthetic_allocation == "per_real" else ALLOCATION_CAP)


def needed_per_reference(spec: RunSpec, real: pd.DataFrame) -> pd.Series:
    """The images a run may draw from each of its references: k, or its allocation's
    quota (a balancing one's is known from the real images; a ``by_error`` one's is at most the cap)."""
    if spec.synthetic_allocation in BALANCING:
        return quotas(real, spec.synthetic_per_real, spec.synthetic_allocation, spec.seed, ALLOCATION_CAP)
    return pd.Series(most_per_reference(spec), index=real["id"].astype(str))
