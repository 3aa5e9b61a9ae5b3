"""Where does the dose-response saturate? Fit acc(r) = a + b·(1 − exp(−r / c)).

The paper says gains saturate above 10 synthetic per real; here that is a measured
statement: the ratio reaching 90 % of the fitted gain is c·ln 10, with a bootstrap CI over
runs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

from dermsynth.errors import StatisticsError


def saturating(r, a, b, c):
    return a + b * (1 - np.exp(-np.asarray(r, float) / c))


@dataclass
class DoseFit:
    a: float
    b: float
    c: float
    ratio90: float
    ratio90_ci: tuple[float, float]
    plateau: float
    converged: bool


def _fit(r, acc):
    p0 = [float(np.mean(acc[r == r.min()])), float(acc.max() - acc.min()) or 0.01, max(float(np.median(r)), 1.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        popt, _ = curve_fit(saturating, r, acc, p0=p0, bounds=([-1, -1, 1e-3], [2, 2, 1e4]), maxfev=20000)
    return popt


def fit_dose_response(ratios, accuracies, reps: int = 500, seed: int = 0) -> DoseFit:
    """Fit per-run points (ratio, accuracy); CI of the 90 %-of-plateau ratio by bootstrap over runs."""
    r, acc = np.asarray(ratios, float), np.asarray(accuracies, float)
    if len(np.unique(r)) < 3:
        raise StatisticsError("a dose-response fit needs at least 3 distinct ratios")
    try:
        a, b, c = _fit(r, acc)
        converged = True
    except RuntimeError:
        a, b, c, converged = float(acc.mean()), 0.0, float(np.nan), False
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(reps):
        idx = rng.integers(0, len(r), len(r))
        if len(np.unique(r[idx])) < 3:
            continue
        try:
            boot.append(_fit(r[idx], acc[idx])[2] * np.log(10))
        except RuntimeError:
            continue
    ci = (float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))) if boot else (np.nan, np.nan)
    return DoseFit(float(a), float(b), float(c), float(c * np.log(10)), ci, float(a + b), converged)
