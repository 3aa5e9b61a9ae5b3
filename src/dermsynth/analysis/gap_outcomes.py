"""Gaps as outcomes: where a classifier is weakest, per run, and a seed-aware test of whether an
arm narrowed the gap.

The outcomes (each a function of one run's test predictions):

- ``worst_group_accuracy``: the accuracy of the worst skin-type group (groups with at least
  ``MIN_GROUP_N`` test images; higher is better);
- ``group_gap``: the best group's accuracy minus the worst's (lower is better);
- ``worst_class_recall``: the recall of the worst class (higher is better);
- for binary tasks, the equalised-odds components between skin-type groups: ``tpr_gap`` (the
  spread of sensitivity) and ``fpr_gap`` (the spread of the false-positive rate; lower is better).

Why a test of its own. These are not means over test images, so the crossed seed × image
decomposition of :mod:`dermsynth.analysis.seed_variance` does not apply as is. The same two
sources of chance do: the seeds (each run's outcome varies with its seed) and the test images
(shared by both arms, drawn from a population). So the variance of the difference D of the
arms' mean outcomes is estimated as the seed term (the variance of the per-seed differences over
S, paired; Welch's two terms unpaired) plus the image term (the variance of D over a bootstrap of
the test images, resampled within each skin-type group so that every group keeps its size, the
same resample for every run of both arms). The seed × image residual is in both terms; with
paired seeds each seed's own bootstrap variance estimates it, and it is taken out of the image
term, as the crossed design's ANOVA estimator does: left in, it doubles the residual and the
test, though valid, loses most of its power. Unpaired arms keep it in (conservative). D / SE is
referred to t with the seed term's df, as the main test is, for the same reason. Tied per-seed
differences leave it untestable (no p), as there. Its false-positive rate under paired and
image × arm interaction nulls, and its power, are simulated by ``bench/gap_test_validity.py``
and, briefly, in the test suite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from dermsynth.train.group_metrics import MIN_GROUP_N

# outcome → (+1 when higher is better, −1 when lower is better; what it is)
OUTCOMES: dict[str, tuple[int, str]] = {
    "worst_group_accuracy": (1, "accuracy of the worst skin-type group"),
    "group_gap": (-1, "best minus worst skin-type group accuracy"),
    "worst_class_recall": (1, "recall of the worst class"),
    "tpr_gap": (-1, "spread of sensitivity between skin-type groups (equalised odds)"),
    "fpr_gap": (-1, "spread of the false-positive rate between skin-type groups (equalised odds)"),
}
BOOTSTRAP_REPS = 200


def _codes(group: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each image's skin-type group as an index (−1 where unknown), and the groups' names."""
    known = [g is not None and g == g for g in group]
    names = sorted({str(g) for g, k in zip(group, known, strict=True) if k})
    return np.array([names.index(str(g)) if k else -1 for g, k in zip(group, known, strict=True)]), names


def _one_hot(codes: np.ndarray, k: int) -> np.ndarray:
    return (codes[:, None] == np.arange(k)[None, :]).astype(float)


def _spread(rates: np.ndarray, keep: np.ndarray, worst: bool) -> np.ndarray:
    """Per run: the lowest rate (``worst``) or the highest minus the lowest, over the kept columns;
    NaN with fewer than two kept columns."""
    if keep.sum() < 2:
        return np.full(rates.shape[0], np.nan)
    r = rates[:, keep]
    return r.min(1) if worst else r.max(1) - r.min(1)


def outcome_values(outcome: str, correct: np.ndarray, label: np.ndarray, codes: np.ndarray, n_groups: int,
                   n_classes: int) -> np.ndarray:
    """One outcome of every run (``correct``: runs × images; ``codes``: group indices, −1 unknown)."""
    m = np.atleast_2d(np.asarray(correct, dtype=float))
    if outcome == "worst_class_recall":
        member = _one_hot(np.asarray(label), n_classes)
        counts = member.sum(0)
        present = counts > 0
        return (m @ member[:, present] / counts[present]).min(1) if present.any() else np.full(len(m), np.nan)
    member = _one_hot(codes, n_groups)
    if outcome in ("worst_group_accuracy", "group_gap"):
        counts = member.sum(0)
        rates = m @ member / np.maximum(counts, 1)
        return _spread(rates, counts >= MIN_GROUP_N, outcome == "worst_group_accuracy")
    if n_classes != 2:
        return np.full(len(m), np.nan)
    truth = 1 if outcome == "tpr_gap" else 0
    predicted_pos = np.where(np.asarray(label) == 1, m, 1 - m)  # from correctness and the true label
    big = member.sum(0) >= MIN_GROUP_N  # the groups the accuracy gaps count
    member = member * (np.asarray(label) == truth)[:, None]
    counts = member.sum(0)
    rates = predicted_pos @ member / np.maximum(counts, 1)
    return _spread(rates, big & (counts > 0), worst=False)


def outcomes_of(correct: np.ndarray, label: np.ndarray, group: np.ndarray, n_classes: int) -> dict[str, float]:
    """Every gap outcome of one run (``label``: class indices, the positive class of a binary task
    being 1; ``group``: each image's skin-type group, None where unknown)."""
    codes, names = _codes(np.asarray(group, dtype=object))
    names_out = [o for o in OUTCOMES if n_classes == 2 or o not in ("tpr_gap", "fpr_gap")]
    return {o: float(outcome_values(o, correct, label, codes, len(names), n_classes)[0]) for o in names_out}


@dataclass(frozen=True)
class GapTest:
    """One arm against another on one outcome; ``difference`` is oriented so that positive means
    better (a narrower gap, a higher worst-group accuracy)."""

    outcome: str
    value_a: float
    value_b: float
    difference: float
    se: float
    df: float
    p_value: float
    ci_low: float
    ci_high: float
    seeds: int
    seed_sd: float
    image_variance: float


def _resample(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Test-image indices resampled with replacement within each skin-type group (unknown: one more)."""
    return np.concatenate([rng.choice(np.flatnonzero(codes == k), size=int((codes == k).sum()))
                           for k in np.unique(codes)])


def gap_test(outcome: str, runs_a: list[np.ndarray], runs_b: list[np.ndarray], label: np.ndarray,
             group: np.ndarray, n_classes: int, seeds_a: list, seeds_b: list, reps: int = BOOTSTRAP_REPS,
             seed: int = 0, level: float = 0.95) -> GapTest:
    """Compare arm A with arm B on ``outcome`` (each run a correctness vector over the shared test
    images, in one order); see the module's docstring for the variance and the df."""
    sign, nan = OUTCOMES[outcome][0], float("nan")
    codes, names = _codes(np.asarray(group, dtype=object))
    label = np.asarray(label)
    a, b = np.atleast_2d(np.asarray(runs_a, dtype=float)), np.atleast_2d(np.asarray(runs_b, dtype=float))

    def values(m: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        if idx is None:
            return outcome_values(outcome, m, label, codes, len(names), n_classes)
        return outcome_values(outcome, m[:, idx], label[idx], codes[idx], len(names), n_classes)

    fa, fb = values(a), values(b)
    va, vb = float(np.mean(fa)), float(np.mean(fb))
    diff, seeds = sign * (va - vb), min(len(fa), len(fb))
    if np.isnan(fa).any() or np.isnan(fb).any() or seeds < 2:
        return GapTest(outcome, va, vb, diff, nan, nan, nan, nan, nan, seeds, nan, nan)
    paired = sorted(seeds_a) == sorted(seeds_b) and len(set(seeds_a)) == len(seeds_a)
    if paired:
        d = fa[np.argsort(seeds_a)] - fb[np.argsort(seeds_b)]
        seed_term, df, seed_sd = float(d.var(ddof=1) / len(d)), float(len(d) - 1), float(d.std(ddof=1))
    else:
        ta, tb = fa.var(ddof=1) / len(fa), fb.var(ddof=1) / len(fb)
        seed_term = float(ta + tb)
        df = float(seed_term**2 / (ta**2 / (len(fa) - 1) + tb**2 / (len(fb) - 1))) if seed_term > 0 else nan
        seed_sd = float(np.sqrt(fa.var(ddof=1) + fb.var(ddof=1)))
    if not seed_term > 0:  # tied per-seed values: the seed spread is unknown, not zero
        return GapTest(outcome, va, vb, diff, nan, nan, nan, nan, nan, seeds, 0.0, nan)
    rng = np.random.default_rng(seed)
    boots, per_seed = [], []
    for _ in range(reps):
        idx = _resample(codes, rng)
        fa_b, fb_b = values(a, idx), values(b, idx)
        boots.append(np.mean(fa_b) - np.mean(fb_b))
        if paired:
            per_seed.append(fa_b[np.argsort(seeds_a)] - fb_b[np.argsort(seeds_b)])
    image = float(np.nanvar(boots, ddof=1))
    if paired:
        # The bootstrap of D holds σ²_image + σ²_residual / S, and each seed's own bootstrap
        # variance σ²_image + σ²_residual; the seed term already holds the residual, so the image
        # term is (S · V_D − V_seed) / (S − 1), as the crossed design's ANOVA estimator has it.
        s_ = len(fa)
        within = float(np.nanmean(np.nanvar(np.array(per_seed), axis=0, ddof=1)))
        image = max(0.0, (s_ * image - within) / (s_ - 1))
    se = float(np.sqrt(seed_term + image))
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    return GapTest(outcome, va, vb, diff, se, df, p, diff - half, diff + half, seeds, seed_sd, image)


def outcome_interval(outcome: str, runs: list[np.ndarray], label: np.ndarray, group: np.ndarray, n_classes: int,
                     reps: int = BOOTSTRAP_REPS, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """One cell's mean outcome over its seeds and its interval: the seed term (variance over seeds
    / S) plus the test-image term (a bootstrap within groups), t with S − 1 df. Unlike
    :func:`gap_test` the residual is left in both terms: a conservative interval."""
    codes, names = _codes(np.asarray(group, dtype=object))
    label, m = np.asarray(label), np.atleast_2d(np.asarray(runs, dtype=float))
    values = outcome_values(outcome, m, label, codes, len(names), n_classes)
    mean, nan = float(np.mean(values)), float("nan")
    if np.isnan(values).any() or len(values) < 2 or not values.var(ddof=1) > 0:
        return mean, nan, nan
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(reps):
        idx = _resample(codes, rng)
        boots.append(np.mean(outcome_values(outcome, m[:, idx], label[idx], codes[idx], len(names), n_classes)))
    se = float(np.sqrt(values.var(ddof=1) / len(values) + np.nanvar(boots, ddof=1)))
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * se)
    return mean, max(mean - half, 0.0), min(mean + half, 1.0)  # every outcome is a rate or a gap of rates
