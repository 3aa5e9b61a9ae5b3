"""A comparison of two arms that respects seed-to-seed variance: what decides a study's verdicts.

Why not the paper's test. The paper compares seed-mean accuracies with a two-sample proportion
test at n = the test-set size. That treats the test images as the only source of chance and
the training runs as if they did not vary. With randomly initialised backbones on a CPU they
vary a lot (ten seeds of one cell of the quickstart: docs/benchmarks.md), and two arms of
*identical* runs then differ "significantly" far more often than the test's level says
(``dermsynth experiment calibrate`` measures this on a study's own cell). Bouthillier et al.
("Accounting for variance in machine learning benchmarks", MLSys 2021) show that data
sampling and initialisation dominate such differences and recommend comparing across seeds.

What we do instead, and why this method. A study's arms share their test images, and a seed
draws the same real subset in every arm, so the natural data is a difference matrix
``d[s, i] = correct_A[s, i] − correct_B[s, i]`` over seeds × test images: a crossed design
with a seed effect, an image effect and their interaction. The mean difference D has variance

    Var(D) = σ²_seed / S + σ²_image / N + σ²_residual / (S·N),

which the two-way ANOVA mean squares estimate without bias:
``(MS_seed + MS_image − MS_residual) / (S·N)`` — the textbook estimator for crossed random
effects. D / SE is referred to a t distribution with the *seed term's* degrees of freedom,
S − 1 (paired seeds; Welch's df over the two arms' seed terms when the seeds differ), not
Satterthwaite's. Why: the seed term is the only noisy part of the variance estimate (the image
term is estimated from hundreds of images), so D / SE has tails between a normal's and those of
t with S − 1 df — referring it to t(S − 1) can only be conservative. Satterthwaite lends the
image term's many df exactly when the seed term happens to come out small, and the two errors
add, and under an image × arm interaction null (synthetic data moves individual test images,
the mean over images zero) that test rejects more than its level (docs/benchmarks.md).
``bench/test_validity.py`` measures the level of this rule under three nulls at 2–10 seeds and
its power (docs/benchmarks.md); the test suite runs a short version of it.

Ties. When every per-seed difference is the same (accuracies move in steps of 1/N, so two seeds
can tie exactly) the seed variance is estimated as zero. No finite number of seeds supports
that estimate, so the comparison is untestable (no p, no CI, no power figure) whatever the image
term says: one rule, with no dependence on the sign of a noise estimate.

We chose this over three alternatives because (a) a mixed-effects logistic model
of per-image correctness with seed and image effects is the same model on the logit scale but
takes seconds per comparison and fails to converge with 2 seeds, where the verdict matters
most; (b) a permutation test over seed labels has a smallest attainable p of 0.25 with 2 paired
seeds and 0.0625 with 5, so it can never reject at BH-adjusted 0.05 at those seed counts; (c) a
hierarchical bootstrap over 2 seeds under-states the seed variance (a resample of 2 values has
half their variance on average) and is anticonservative. The t test here is exact when the
per-seed differences are normal (they are means of hundreds of per-image differences) and its
A/A false-positive rate is checked by simulation in the test suite and, on a study's own cell,
by ``experiment calibrate``.

Unpaired arms (seed sets that differ) use the same decomposition per arm with independent seed
terms (a Welch-type analogue). One seed per arm leaves the seed variance unknown: no verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import integrate, optimize, special, stats

from dermsynth.errors import StatisticsError

TEST_NAME = "seed-aware t test (crossed seed × test-image variance, df of the seed term)"
PAPER_TEST_NAME = "the paper's two-sample proportion test on seed-mean accuracies (n = test images)"


@dataclass(frozen=True)
class SeedAwareResult:
    """One comparison A − B. ``p_value`` is NaN when the seeds cannot estimate their variance."""

    difference: float
    se: float
    df: float
    p_value: float
    ci_low: float
    ci_high: float
    seeds_a: int
    seeds_b: int
    paired: bool
    seed_sd: float  # sd over seeds of the per-seed difference (paired) or pooled per-seed accuracy sd
    image_variance: float  # the test-image term of Var(D), σ²_image / N

    @property
    def testable(self) -> bool:
        return bool(np.isfinite(self.p_value))

    def as_dict(self) -> dict:
        return asdict(self)


def _two_way(m: np.ndarray) -> tuple[float, float, float]:
    """Row-mean variance / S, column-mean variance / N and MS_residual / (S·N) of a seeds × images matrix."""
    s, n = m.shape
    rows, cols, grand = m.mean(axis=1), m.mean(axis=0), m.mean()
    resid = m - rows[:, None] - cols[None, :] + grand
    ms_resid = float((resid**2).sum() / ((s - 1) * (n - 1))) if s > 1 and n > 1 else 0.0
    row_term = float(rows.var(ddof=1) / s) if s > 1 else np.nan
    col_term = float(cols.var(ddof=1) / n) if n > 1 else 0.0
    return row_term, col_term, ms_resid / (s * n)


def _combine(seed_terms: list[tuple[float, float]], image_terms: list[tuple[float, float]],
             residual_terms: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Var(D), the seed term's df and the image term from mean-square terms (value, df).

    The image term is ``Σ image − Σ residual``; when that is ≤ 0 the image variance is estimated
    as zero (the seed terms already carry the residual noise). The df are those of the seed
    terms alone (Welch's combination when there are two), see the module's docstring.
    """
    image = sum(v for v, _ in image_terms) - sum(v for v, _ in residual_terms)
    seed = sum(v for v, _ in seed_terms)
    var = seed + max(image, 0.0)
    denom = sum(v * v / d for v, d in seed_terms if d > 0 and v != 0)
    df = float(seed * seed / denom) if denom > 0 else float("nan")
    return float(var), df, float(max(image, 0.0))


def seed_aware_test(correct_a: np.ndarray, correct_b: np.ndarray, seeds_a=None, seeds_b=None,
                    level: float = 0.95) -> SeedAwareResult:
    """Compare two arms scored on the same test images (matrices seeds × images of 0/1).

    Seeds are paired when both arms have the same seed values (``seeds_a``/``seeds_b``; by
    position when both are omitted and the arms have as many rows).
    """
    a, b = np.atleast_2d(np.asarray(correct_a, dtype=float)), np.atleast_2d(np.asarray(correct_b, dtype=float))
    if a.shape[1] != b.shape[1]:
        raise StatisticsError(f"both arms must be scored on the same test images ({a.shape[1]} vs {b.shape[1]})")
    n = a.shape[1]
    if (seeds_a is None) != (seeds_b is None):
        raise StatisticsError("give the seeds of both arms (seeds_a and seeds_b) or of neither")
    if seeds_a is None:
        paired = a.shape[0] == b.shape[0]
    else:
        sa, sb = list(seeds_a), list(seeds_b)
        if len(sa) != a.shape[0] or len(sb) != b.shape[0]:
            raise StatisticsError(f"{len(sa)} and {len(sb)} seeds given for arms of {a.shape[0]} and {b.shape[0]} "
                                  "runs")
        paired = len(sa) == len(set(sa)) and sorted(sa) == sorted(sb)
        if paired:
            a, b = a[np.argsort(sa)], b[np.argsort(sb)]
    diff = float(a.mean() - b.mean())
    if paired:
        s = a.shape[0]
        row, col, res = _two_way(a - b)
        terms = ([(row, s - 1)], [(col, n - 1)], [(res, (s - 1) * (n - 1))])
        seed_sd = float(np.sqrt(row * s)) if s > 1 else np.nan
    else:
        (row_a, _, res_a), (row_b, _, res_b) = _two_way(a), _two_way(b)
        s = min(a.shape[0], b.shape[0])
        # the image term of the difference: column means of A − B, less the residual noise they carry
        e = a.mean(axis=0) - b.mean(axis=0)
        terms = ([(row_a, a.shape[0] - 1), (row_b, b.shape[0] - 1)], [(float(e.var(ddof=1) / n), n - 1)],
                 [(res_a, (a.shape[0] - 1) * (n - 1)), (res_b, (b.shape[0] - 1) * (n - 1))])
        pooled = np.concatenate([a.mean(axis=1) - a.mean(), b.mean(axis=1) - b.mean()])
        # as the sd of a difference of two independent runs, so power and seed counts read it alike
        seed_sd = float(np.sqrt(2 * (pooled**2).sum() / max(len(pooled) - 2, 1))) if s > 1 else np.nan
    if s < 2 or n < 2:
        nan = float("nan")
        return SeedAwareResult(diff, nan, nan, nan, nan, nan, a.shape[0], b.shape[0], paired, nan, nan)
    var, df, image = _combine(*terms)
    seed_term = sum(v for v, _ in terms[0])
    if not seed_term > 0:
        # every per-seed difference (or every arm's per-seed accuracy) the same: the seed-to-seed
        # spread is unknown, not zero — untestable, whatever the image term (the module's rule)
        nan = float("nan")
        return SeedAwareResult(diff, nan, nan, nan, nan, nan, a.shape[0], b.shape[0], paired, 0.0, image)
    se = float(np.sqrt(var))
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    # an accuracy difference lies in [−1, 1]: a 1-df interval wider than that says no more clipped
    lo, hi = max(diff - half, -1.0), min(diff + half, 1.0)
    return SeedAwareResult(diff, se, df, p, lo, hi, a.shape[0], b.shape[0], paired, seed_sd, image)


def power(effect: float, se: float, df: float, alpha: float = 0.05) -> float:
    """Probability that the two-sided t test at ``alpha`` rejects when the true difference is ``effect``."""
    if not (np.isfinite(se) and se > 0 and np.isfinite(df) and df > 0):
        return float("nan")
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) / se
    with np.errstate(all="ignore"):
        p = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if np.isfinite(p):
        return min(p, 1.0)
    # scipy's noncentral t returns NaN far in its tail: with many df the t is normal; otherwise
    # integrate over the chi-square of the variance estimate, P(|Z + nc| > crit·√(V/df)), on the
    # range where that chi-square has its mass
    if df > 200:
        return float(min(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc), 1.0))

    # the same integrand written with scipy.special (Φ and the chi-square density's log): the
    # scipy.stats wrappers' overhead per call, times the hundreds of calls quad makes per power,
    # would be most of a report's time (docs/benchmarks.md)
    log_norm = special.gammaln(df / 2) + (df / 2) * np.log(2.0)

    def tail(v: float) -> float:
        c = crit * np.sqrt(v / df)
        density = np.exp(special.xlogy(df / 2 - 1, v) - v / 2 - log_norm) if v > 0 else stats.chi2.pdf(v, df)
        return (special.ndtr(nc - c) + special.ndtr(-c - nc)) * density

    top = float(stats.chi2.ppf(1 - 1e-12, df))
    return float(min(integrate.quad(tail, 0, top, points=[min(df, top)], limit=200)[0], 1.0))


def detectable_effect(se: float, df: float, alpha: float = 0.05, target: float = 0.8) -> float:
    """The smallest true difference the test detects with probability ``target`` (80 % power)."""
    if not (np.isfinite(se) and se > 0 and np.isfinite(df) and df > 0):
        return float("nan")
    hi = se * 10.0
    while power(hi, se, df, alpha) < target:
        hi *= 4
    return float(optimize.brentq(lambda e: power(e, se, df, alpha) - target, 0.0, hi))


def design_se(seed_sd: float, seeds: int, image_variance: float = 0.0) -> tuple[float, float]:
    """(SE, df) of a paired comparison with ``seeds`` seeds given the per-seed difference sd."""
    return float(np.sqrt(seed_sd**2 / seeds + image_variance)), float(seeds - 1)


def seeds_needed(effect: float, seed_sd: float, image_variance: float = 0.0, alpha: float = 0.05,
                 target: float = 0.8, most: int = 200) -> int | None:
    """Seeds per arm for 80 % power against ``effect`` (paired design); None when more than ``most``."""
    if not (np.isfinite(seed_sd) and effect):
        return None
    for s in range(2, most + 1):
        se, df = design_se(seed_sd, s, image_variance)
        if se == 0 or power(effect, se, df, alpha) >= target:
            return s
    return None


UCB_LEVEL = 0.9


def seed_sd_upper(sd: float, seeds: int, level: float = UCB_LEVEL) -> float:
    """The one-sided ``level`` upper confidence bound of a per-seed sd estimated from ``seeds``
    runs (chi-square with seeds − 1 df). Why plan from it: an sd from few seeds is itself very
    uncertain (from 2 seeds it has 1 df), and planning from the point estimate under-powers the
    study about half the time."""
    if seeds < 2 or not np.isfinite(sd):
        return float("nan")
    return float(sd * np.sqrt((seeds - 1) / stats.chi2.ppf(1 - level, seeds - 1)))


def accuracy_interval(correct: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """A cell's mean accuracy and its CI counting both sources of chance, from its correctness
    matrix (seeds × test images of 0/1): which runs (seeds) and which test images.

    The variance of the mean is the crossed random-effects estimate
    ``(MS_seed + MS_image − MS_residual) / (S·N)`` and the interval is referred to t with the
    seed term's S − 1 df (as :func:`seed_aware_test`, for the same reason), clipped to [0, 1].
    The paper's Wald interval (n = test images) ignores the seeds and covers a cell's expected
    accuracy far less often than it says when seeds vary; this one's coverage is measured by
    ``bench/test_validity.py`` (docs/benchmarks.md).
    One seed, or seeds whose accuracies tie exactly, leave the seed variance unknown: NaN bounds.
    """
    m = np.atleast_2d(np.asarray(correct, dtype=float))
    s, n = m.shape
    mean = float(m.mean())
    if s < 2 or n < 2:
        return mean, float("nan"), float("nan")
    row, col, res = _two_way(m)
    if not row > 0:
        return mean, float("nan"), float("nan")
    se = float(np.sqrt(row + max(col - res, 0.0)))
    half = float(stats.t.ppf(0.5 + level / 2, s - 1)) * se
    return mean, max(mean - half, 0.0), min(mean + half, 1.0)
