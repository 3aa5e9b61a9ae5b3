"""Simulated studies under realistic nulls and planted effects: how often a test rejects.

Why: a verdict is only as good as the test's level under the nulls a real study meets, and an
A/A split of one real cell (``experiment calibrate``) cannot show all of them — it has no
image × arm interaction by construction. These simulations have the structure of a study's
correctness matrices (seeds × test images of 0/1), on the logit scale:

- each test image has a difficulty shared by every run of both arms (a study's test set is
  shared), drawn afresh for every simulated study, since the test generalises over test images;
- each seed has an ability shared by both arms when seeds are paired (a seed draws the same real
  subset in every arm), plus a run shift and a run × class effect of each run's own;
- the nulls: ``paired`` (both arms alike, seeds paired), ``aa_disjoint`` (both alike, the arms'
  seeds distinct, so the test is unpaired) and ``interaction`` (synthetic data moves individual
  images: image i gets +w_i/2 in one arm and −w_i/2 in the other with w_i ~ N(0, sd²), which is
  symmetric, so the expected accuracy of both arms is the same exactly);
- ``effect`` plants a shift in one arm that moves its expected accuracy by the given amount.

``seed_sd`` is the per-seed sd of one run's accuracy (accuracy units; docs/benchmarks.md has
the range CPU studies measure); the logit-scale components are scaled to give it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.special import expit

from dermsynth.analysis.seed_variance import seed_aware_test
from dermsynth.analysis.sequential import SequentialDesign, decide
from dermsynth.analysis.verdicts import equivalence_p
from dermsynth.errors import StatisticsError
from dermsynth.stats import wilson_interval

NULLS = ("paired", "aa_disjoint", "interaction")


@dataclass(frozen=True)
class Scenario:
    """One simulated design. ``effect`` is the planted accuracy difference (0 under a null)."""

    null: str
    seeds: int
    seed_sd: float
    interaction_sd: float = 0.0
    effect: float = 0.0
    n_classes: int = 9
    per_class: int = 40
    accuracy: float = 0.4

    def __post_init__(self):
        if self.null not in (*NULLS, "effect"):
            raise StatisticsError(f"null {self.null!r}; choose one of {', '.join(NULLS)} or effect")


class StudySimulator:
    """Draws pairs of correctness matrices (arm A, arm B) for one :class:`Scenario`."""

    DIFFICULTY_SD = 1.5

    def __init__(self, scenario: Scenario, rng: np.random.Generator):
        self.sc, self.rng = scenario, rng
        n = scenario.n_classes * scenario.per_class
        self.classes = np.repeat(np.arange(scenario.n_classes), scenario.per_class)
        # a large fixed sample of image logits to turn accuracies into logit-scale parameters
        grid = np.random.default_rng(12345).normal(0.0, self.DIFFICULTY_SD, 20000)
        self.mu = _solve(lambda m: expit(m - grid).mean(), scenario.accuracy)
        slope = float((expit(self.mu - grid) * (1 - expit(self.mu - grid))).mean())
        v = (scenario.seed_sd / slope) ** 2  # logit-scale variance of a run's ability
        self.sd_seed, self.sd_run = np.sqrt(0.5 * v), np.sqrt(0.25 * v)
        self.sd_class = np.sqrt(0.25 * v * scenario.n_classes)  # diluted over the classes in the accuracy
        self.shift = 0.0
        if scenario.effect:
            base = expit(self.mu - grid).mean()
            self.shift = _solve(lambda d: expit(self.mu + d - grid).mean() - base, scenario.effect)
        self.n = n

    def _runs(self, seed_effect: np.ndarray, logits: np.ndarray) -> np.ndarray:
        s, k = len(seed_effect), self.sc.n_classes
        run = self.rng.normal(0.0, self.sd_run, s)[:, None]
        by_class = self.rng.normal(0.0, self.sd_class, (s, k))[:, self.classes]
        p = expit(logits[None, :] + seed_effect[:, None] + run + by_class)
        return self.rng.random(p.shape) < p

    def draw(self) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
        """(A, B, seeds of A, seeds of B): matrices seeds × images of 0/1."""
        sc = self.sc
        logits = self.mu - self.rng.normal(0.0, self.DIFFICULTY_SD, self.n)
        w = self.rng.normal(0.0, sc.interaction_sd, self.n) if sc.null == "interaction" else np.zeros(self.n)
        seeds = list(range(sc.seeds))
        ability_a = self.rng.normal(0.0, self.sd_seed, sc.seeds)
        if sc.null == "aa_disjoint":
            ability_b, seeds_b = self.rng.normal(0.0, self.sd_seed, sc.seeds), list(range(sc.seeds, 2 * sc.seeds))
        else:
            ability_b, seeds_b = ability_a, seeds
        a = self._runs(ability_a, logits + w / 2 + self.shift)
        b = self._runs(ability_b, logits - w / 2)
        return a, b, seeds, seeds_b


def _solve(f: Callable[[float], float], target: float, lo: float = -10.0, hi: float = 10.0) -> float:
    """Bisection for an increasing ``f``: the x with f(x) = target."""
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return (lo + hi) / 2


Test = Callable[[np.ndarray, np.ndarray, list, list], float]


def seed_aware_p(a: np.ndarray, b: np.ndarray, seeds_a: list, seeds_b: list) -> float:
    return seed_aware_test(a, b, seeds_a, seeds_b).p_value


def rejection_rate(scenario: Scenario, reps: int, seed: int = 0, alpha: float = 0.05,
                   test: Test = seed_aware_p) -> dict:
    """The share of ``reps`` simulated studies in which ``test`` rejects at ``alpha``, with its
    95 % Monte-Carlo (Wilson) interval. Untestable draws (NaN p) count as not rejected and are
    counted."""
    sim = StudySimulator(scenario, np.random.default_rng(seed))
    rejected = untestable = 0
    for _ in range(reps):
        p = test(*sim.draw())
        untestable += not np.isfinite(p)
        rejected += bool(np.isfinite(p) and p < alpha)
    lo, hi = _wilson(rejected, reps)
    return {**asdict(scenario), "reps": reps, "alpha": alpha, "rate": rejected / reps, "mc_low": lo, "mc_high": hi,
            "untestable": untestable / reps}


def null_grid(seed_counts=(2, 3, 4, 5, 10), seed_sds=(0.03, 0.08), interaction_sds=(0.6, 1.0)) -> list[Scenario]:
    """Every null × seed count × seed sd (the interaction null at each of its sds)."""
    out = []
    for s in seed_counts:
        for sd in seed_sds:
            out += [Scenario("paired", s, sd), Scenario("aa_disjoint", s, sd)]
            out += [Scenario("interaction", s, sd, interaction_sd=w) for w in interaction_sds]
    return out


def power_grid(seed_counts=(3, 5, 10), seed_sds=(0.03, 0.08), effects=(0.05, 0.10)) -> list[Scenario]:
    return [Scenario("effect", s, sd, effect=e) for s in seed_counts for sd in seed_sds for e in effects]


def _wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Monte-Carlo (Wilson) interval of a rate k / n, clipped so that it contains the rate."""
    lo, hi = wilson_interval(k, n)
    return min(max(lo, 0.0), k / n), max(min(hi, 1.0), k / n)


def seed_aware_ps(a: np.ndarray, b: np.ndarray, sa: list, sb: list) -> tuple[float, float]:
    """The seed-aware test's p and its equivalence p: what a look of the accuracy family decides on."""
    res = seed_aware_test(a, b, sa, sb)
    return res.p_value, equivalence_p(res.difference, res.se, res.df)


def sequential_rates(scenario: Scenario, design: SequentialDesign, reps: int, seed: int = 0,
                     simulator: Callable[[Scenario, np.random.Generator], StudySimulator] = StudySimulator,
                     test: Callable[[np.ndarray, np.ndarray, list, list], tuple[float, float]] = seed_aware_ps) -> dict:
    """Simulated sequential comparisons: each study draws ``design.looks[-1]`` seeds per arm and
    looks at the first n of them at each look, as ``experiment run --until-decided`` does, and
    decides each look on ``test``'s p and equivalence p (the seed-aware test of accuracy, or a
    main comparison's gap test, on a ``simulator`` that plants what it needs).

    Returns the share of studies that claimed a difference (the false-positive rate under a
    null, the power under an effect), that claimed equivalence, the mean seeds per arm used, and
    — on the same draws — the rate of naive optional stopping (stop at the first look with
    p < α), the procedure a sequential design replaces."""
    sim = simulator(replace(scenario, seeds=design.looks[-1]), np.random.default_rng(seed))
    claims = equivalent = naive = 0
    seeds_used = []
    for _ in range(reps):
        a, b, sa, sb = sim.draw()
        naive_hit = False
        for k, n in enumerate(design.looks):
            p, p_equiv = test(a[:n], b[:n], sa[:n], sb[:n])
            naive_hit = naive_hit or bool(np.isfinite(p) and p < design.alpha)
            d = decide(design, k, p, p_equiv)
            if d.stopped:
                break
        claims += d.decision == "difference"
        equivalent += d.decision == "equivalence"
        naive += naive_hit
        seeds_used.append(d.seeds)
    lo, hi = _wilson(claims, reps)
    return {**asdict(scenario), "looks": list(design.looks), "spending": design.spending, "reps": reps,
            "rate": claims / reps, "mc_low": lo, "mc_high": hi, "equivalence_rate": equivalent / reps,
            "mean_seeds": float(np.mean(seeds_used)), "naive_rate": naive / reps}
