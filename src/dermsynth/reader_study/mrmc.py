"""Inference for a reader study in which readers and items are both samples (MRMC).

Every reader answers (most of) the same items, so answers are not independent: a hard item is
hard for every reader, a keen reader is keen on every item. A test that counts readers × items
as independent trials rejects a true 50 % far too often (a simulation with 10 readers × 40
items and item difficulty sd 0.2: docs/benchmarks.md). Here the statistic is the mean of a readers × items
matrix ``Y`` (0/1 correctness, or jackknife pseudovalues of a per-reader figure of merit such
as the AUC or d′ — the Dorfman–Berbaum–Metz approach), and its variance has a reader, an item
and a residual part:

    Var(mean) = σ²_reader / R + σ²_item / I + σ²_residual / N

estimated by moments as in a two-way random-effects ANOVA (Clark's quasi-F for subjects and
items; DBM/Obuchowski–Rockette for reader studies): with per-reader and per-item sums of the
centred answers (two-way cluster-robust terms with the G/(G−1) correction) and the residual of
an additive reader + item fit. On a complete matrix this equals the ANOVA estimate
``(MS_R + MS_I − MS_E) / N``; missing cells (a reader who stopped early) are allowed. Negative
components are truncated at 0, and the t statistic gets Satterthwaite's degrees of freedom.
Why not a GLMM: it needs iterative fitting per test and per simulation; this is closed-form,
vectorised over any leading axes (thousands of simulated studies at once), and is checked by
simulation under the null (tests/test_reader_study_analysis.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats


def _additive_residual(y: np.ndarray, m: np.ndarray, iters: int = 50) -> np.ndarray:
    """Residuals of ``y ≈ mean + a_reader + b_item`` fitted by least squares (backfitting; one
    step on a complete matrix) over the observed cells ``m``."""
    n_r = np.maximum(m.sum(-1, keepdims=True), 1)
    n_i = np.maximum(m.sum(-2, keepdims=True), 1)
    a = np.zeros_like(y[..., :, :1])
    b = np.zeros_like(y[..., :1, :])
    for _ in range(iters):
        a = np.where(m, y - b, 0).sum(-1, keepdims=True) / n_r
        b_new = np.where(m, y - a, 0).sum(-2, keepdims=True) / n_i
        if np.allclose(b_new, b, atol=1e-10):
            b = b_new
            break
        b = b_new
    return np.where(m, y - a - b, 0)


def crossed_mean_test(y: np.ndarray, null: float = 0.5) -> dict:
    """Mean of ``y`` (shape ``(..., readers, items)``, NaN where a reader did not answer), its
    standard error with reader and item effects, a 95 % CI and the two-sided t test against
    ``null``. Arrays over the leading axes; plain floats for a single matrix. When nothing varies
    (every value the same) ``p_value`` is 0 if that value differs from ``null``, else NaN."""
    y = np.asarray(y, dtype=float)
    m = ~np.isnan(y)
    n = m.sum((-2, -1))
    readers = (m.sum(-1) > 0).sum(-1)
    items = (m.sum(-2) > 0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(m, y, 0).sum((-2, -1)) / n
        e = np.where(m, y - mean[..., None, None], 0)
        v_r = np.where(readers > 1, readers / (readers - 1), 0) * (e.sum(-1) ** 2).sum(-1) / n**2
        v_i = np.where(items > 1, items / (items - 1), 0) * (e.sum(-2) ** 2).sum(-1) / n**2
        df_e = np.maximum(n - np.where(readers > 1, readers, 1) - np.where(items > 1, items, 1) + 1, 1)
        v_e = (_additive_residual(np.where(m, y - mean[..., None, None], 0), m) ** 2).sum((-2, -1)) / df_e / n
        use_r = (readers > 1) & (v_r > v_e)
        use_i = (items > 1) & (v_i > v_e)
        a_e = 1.0 - use_r - use_i
        var = use_r * v_r + use_i * v_i + a_e * v_e
        df = var**2 / (use_r * v_r**2 / np.maximum(readers - 1, 1) + use_i * v_i**2 / np.maximum(items - 1, 1)
                       + a_e**2 * v_e**2 / df_e)
        se = np.sqrt(var)
        t = (mean - null) / se
        p = np.where(se > 0, 2 * stats.t.sf(np.abs(t), df), np.where(mean == null, np.nan, 0.0))
        half = stats.t.ppf(0.975, df) * se
    out = {"mean": mean, "se": se, "df": df, "ci_low": mean - half, "ci_high": mean + half, "p_value": p,
           "readers": readers, "items": items, "n": n}
    if y.ndim == 2:
        out = {k: (int(v) if k in ("readers", "items", "n") else float(v)) for k, v in out.items()}
    return out


def auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Mann–Whitney AUC (ties count one half); NaN without both classes."""
    positive = np.asarray(positive, dtype=bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def dprime(hit: np.ndarray, false_alarm: np.ndarray) -> tuple[float, float]:
    """d′ and criterion c from "synthetic" answers on synthetic (``hit``) and real
    (``false_alarm``) items, with the log-linear correction (add ½ to counts and 1 to totals,
    Hautus 1995) so that 0 % and 100 % stay finite."""
    h = (np.sum(hit) + 0.5) / (len(hit) + 1)
    f = (np.sum(false_alarm) + 0.5) / (len(false_alarm) + 1)
    zh, zf = stats.norm.ppf(h), stats.norm.ppf(f)
    return float(zh - zf), float(-(zh + zf) / 2)


def pseudovalues(readers: np.ndarray, items: np.ndarray, fom: Callable[[np.ndarray], float]) -> tuple:
    """Jackknife pseudovalues ``n θ_r − (n − 1) θ_r(−k)`` of a per-reader figure of merit
    (``fom(rows)``: θ of the answers at the row indices ``rows``) over each reader's items, as a
    readers × items matrix (NaN where a reader did not answer an item), and the mean θ_r."""
    readers, items = np.asarray(readers), np.asarray(items)
    reader_ids, item_ids = np.unique(readers), np.unique(items)
    col = np.searchsorted(item_ids, items)
    y = np.full((len(reader_ids), len(item_ids)), np.nan)
    thetas = []
    for r, who in enumerate(reader_ids):
        rows = np.flatnonzero(readers == who)
        theta, n = fom(rows), len(rows)
        thetas.append(theta)
        for k in range(n):
            y[r, col[rows[k]]] = n * theta - (n - 1) * fom(np.delete(rows, k))
    with np.errstate(invalid="ignore"):
        return y, float(np.nanmean(thetas)) if np.isfinite(thetas).any() else float("nan")
