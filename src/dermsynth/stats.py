"""The paper's statistics, checked against R/statsmodels and the paper's own numbers.

What decides a study's verdicts is the seed-aware test (``seed_variance.py``); the paper's
proportion test is kept, named as such, beside it.

- Mean accuracy over seeds with a 95 % Wald CI using n = test-set size (as the paper);
  Wilson as an option.
- Two-sample proportion test on mean accuracies with n = test-set size, with Yates'
  continuity correction by default (R's ``prop.test``): 29.4 % vs 26.3 % on 360 → p ≈ 0.39;
  Fisher's exact test as an option.
- Benjamini–Hochberg over the comparisons of one figure.
- Bootstrap CIs of accuracy differences, resampling test images (paired) and seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from dermsynth.errors import ConfigError, StatisticsError

Z95 = 1.959963984540054


def wald_ci(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    half = z * np.sqrt(max(p * (1 - p), 0.0) / n)
    return float(p - half), float(p + half)


def wilson_ci(p: float, n: int) -> tuple[float, float]:
    lo, hi = proportion_confint(p * n, n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of k successes in n (NaN for n = 0): from counts, so no rounding of k / n."""
    if not n:
        return float("nan"), float("nan")
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


def accuracy_ci(p: float, n: int, method: str = "wald") -> tuple[float, float]:
    if method == "wald":
        return wald_ci(p, n)
    if method == "wilson":
        return wilson_ci(p, n)
    raise ConfigError(f"ci method {method!r}; choose wald or wilson")


@dataclass
class PropTest:
    statistic: float
    p_value: float
    difference: float


def prop_test(p1: float, p2: float, n1: int, n2: int, correct: bool = True) -> PropTest:
    """R's ``prop.test`` for two proportions (x = p·n may be fractional, as in the paper)."""
    x = np.array([p1 * n1, p2 * n2], dtype=float)
    n = np.array([n1, n2], dtype=float)
    pooled = x.sum() / n.sum()
    if pooled in (0.0, 1.0):
        return PropTest(0.0, 1.0, float(p1 - p2))
    table = np.stack([x, n - x], axis=1)
    expected = np.stack([n * pooled, n * (1 - pooled)], axis=1)
    delta = p1 - p2
    yates = min(0.5, abs(delta) / (1 / n1 + 1 / n2)) if correct else 0.0
    chi2 = float(((np.abs(table - expected) - yates) ** 2 / expected).sum())
    return PropTest(chi2, float(stats.chi2.sf(chi2, 1)), float(delta))


def fisher_test(p1: float, p2: float, n1: int, n2: int) -> PropTest:
    a, c = round(p1 * n1), round(p2 * n2)
    res = stats.fisher_exact([[a, n1 - a], [c, n2 - c]])
    return PropTest(float(res.statistic), float(res.pvalue), float(p1 - p2))


def compare(p1: float, p2: float, n: int, test: str = "prop", correct: bool = True) -> PropTest:
    if test == "prop":
        return prop_test(p1, p2, n, n, correct)
    if test == "fisher":
        return fisher_test(p1, p2, n, n)
    raise ConfigError(f"test {test!r}; choose prop or fisher")


def bh_adjust(p_values) -> np.ndarray:
    """Benjamini–Hochberg over the finite p-values; NaN (an untestable comparison) stays NaN and
    does not count in the family (statsmodels would turn the whole column into NaN)."""
    p = np.asarray(list(p_values), dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


def bootstrap_difference(correct_a: np.ndarray, correct_b: np.ndarray, reps: int = 2000, seed: int = 0,
                         level: float = 0.95, seeds_a=None, seeds_b=None) -> tuple[float, float, float]:
    """CI of mean accuracy(A) − accuracy(B) from per-image correctness matrices (seeds × images).

    Test images are resampled jointly for A and B (paired: the same test set). Seeds are
    resampled *together* when the arms are paired (the same seed values, or — without seed
    values — as many rows, paired by position as :func:`seed_aware_test` pairs them): a seed
    draws the same real subset in both arms, so resampling them apart would throw that pairing
    away. Otherwise each arm's seeds are resampled on their own.
    """
    a, b = np.atleast_2d(correct_a).astype(float), np.atleast_2d(correct_b).astype(float)
    if a.shape[1] != b.shape[1]:
        raise StatisticsError(f"both arms must be scored on the same test images ({a.shape[1]} vs {b.shape[1]})")
    if seeds_a is not None and seeds_b is not None:
        sa, sb = list(seeds_a), list(seeds_b)
        paired = len(sa) == len(set(sa)) and sorted(sa) == sorted(sb)
        if paired:
            a, b = a[np.argsort(sa)], b[np.argsort(sb)]
    else:
        paired = a.shape[0] == b.shape[0]
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    diffs = np.empty(reps)
    for r in range(reps):
        img = rng.integers(0, n, n)
        sa_idx = rng.integers(0, a.shape[0], a.shape[0])
        sb_idx = sa_idx if paired else rng.integers(0, b.shape[0], b.shape[0])
        diffs[r] = a[np.ix_(sa_idx, img)].mean() - b[np.ix_(sb_idx, img)].mean()
    alpha = (1 - level) / 2
    return float(a.mean() - b.mean()), float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))


def bootstrap_accuracy(correct: np.ndarray, reps: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float, float]:
    """Mean accuracy of a cell and its CI from a correctness matrix (seeds × images),
    resampling seeds and images (two-level bootstrap: both the training and the test set vary)."""
    a = np.atleast_2d(correct).astype(float)
    rng = np.random.default_rng(seed)
    means = np.empty(reps)
    for r in range(reps):
        means[r] = a[np.ix_(rng.integers(0, a.shape[0], a.shape[0]), rng.integers(0, a.shape[1], a.shape[1]))].mean()
    alpha = (1 - level) / 2
    return float(a.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
