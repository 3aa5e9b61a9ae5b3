"""Is the gap test (dermsynth.analysis.gap_outcomes) valid, and how much power does it keep?

Simulated studies (dermsynth.analysis.null_simulation: image difficulty shared by both arms, a
seed effect shared by paired arms, a run shift and a run × class effect), with three skin-type
groups of 50 %, 30 % and 20 % of the test images, under two nulls — paired seeds, and an
image × arm interaction (synthetic data moves single test images, symmetrically) — at 3, 5 and
10 seeds per arm, for the worst-group accuracy, the group gap and the worst-class recall. Then
power (400 test images, per-seed sd 3 points): the 20 % group 15 or 20 points harder in both arms,
and arm A's images of it made easier by a planted shift worth 10 or 15 points (a narrowed gap). Each row: the
rejection rate at α = 0.05 with its 95 % Monte-Carlo (Wilson) interval.

    python bench/gap_test_validity.py [--reps 400] [--boot 100]
    python bench/gap_test_validity.py --design gaps_cpu --reps 200   # the gaps_cpu preset's power
    python bench/gap_test_validity.py --design gaps_cpu --sequential --reps 200   # its sequential design

``--design gaps_cpu``: the power of that preset's main comparison alone — three skin-type groups of
99 test images each (its 100 per group), per-seed sd 3 points, the worst group 15 points behind and
narrowed by 10 or 15 points, at 5, 8 and 10 seeds.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy.special import expit

from dermsynth.analysis.gap_outcomes import gap_test
from dermsynth.analysis.null_simulation import Scenario, StudySimulator, _solve, _wilson, sequential_rates
from dermsynth.analysis.sequential import SequentialDesign
from dermsynth.analysis.verdicts import equivalence_p
from dermsynth.models.precision_rule import cpu_name

OUTCOMES = ("worst_group_accuracy", "group_gap", "worst_class_recall")


def skin_groups(n: int) -> np.ndarray:
    """Three groups of 50 / 30 / 20 % of the images, spread over the classes."""
    pattern = np.array(["I-II"] * 5 + ["III-IV"] * 3 + ["V-VI"] * 2, dtype=object)
    return pattern[np.arange(n) % 10]


class GroupShiftSimulator(StudySimulator):
    """As StudySimulator, with one group's images harder in both arms (its accuracy ``handicap``
    lower) and arm A's images of that group easier by ``gain``: arm A narrows the gap."""

    def __init__(self, scenario: Scenario, rng: np.random.Generator, groups: np.ndarray, group: str, gain: float,
                 handicap: float = 0.15):
        super().__init__(scenario, rng)
        grid = np.random.default_rng(12345).normal(0.0, self.DIFFICULTY_SD, 20000)
        base = expit(self.mu - grid).mean()
        down = _solve(lambda d: expit(self.mu + d - grid).mean() - base, -handicap)
        up = _solve(lambda d: expit(self.mu + down + d - grid).mean() - (base - handicap), gain)
        self.handicap = np.where(groups == group, down, 0.0)
        self.lift = np.where(groups == group, up, 0.0)

    def draw(self):
        sc = self.sc
        logits = self.mu - self.rng.normal(0.0, self.DIFFICULTY_SD, self.n) + self.handicap
        ability = self.rng.normal(0.0, self.sd_seed, sc.seeds)
        seeds = list(range(sc.seeds))
        if sc.null == "interaction":  # synthetic data moves single test images, symmetrically
            w = self.rng.normal(0.0, sc.interaction_sd, self.n)
            return self._runs(ability, logits + w / 2 + self.lift), self._runs(ability, logits - w / 2), seeds, seeds
        return self._runs(ability, logits + self.lift), self._runs(ability, logits), seeds, seeds


def rate(sim: StudySimulator, outcome: str, groups: np.ndarray, reps: int, boot: int,
         alpha: float = 0.05) -> tuple[float, float, float]:
    labels = sim.classes
    rejected = 0
    for i in range(reps):
        a, b, sa, sb = sim.draw()
        p = gap_test(outcome, list(a), list(b), labels, groups, sim.sc.n_classes, sa, sb, reps=boot, seed=i).p_value
        rejected += bool(np.isfinite(p) and p < alpha)
    lo, hi = _wilson(rejected, reps)
    return rejected / reps, lo, hi


def gaps_cpu_power(reps: int, boot: int) -> None:
    """The gaps_cpu preset's main comparison: worst-group accuracy, 3 groups × 99 test images; the
    test alone (α = 0.05) and, had it been left among the report's exploratory gap rows, at BH's worst (every
    other row null: it must reach α / GAPS_CPU_FAMILY), at per-seed sds of 3 and 7.9 points."""
    for sd in (0.03, 0.079):
        for seeds in (5, 8, 12):
            for gain in (0.10, 0.15):
                sc = Scenario("paired", seeds, sd, n_classes=9, per_class=33)
                groups = np.array(["I-II", "III-IV", "V-VI"] * 99, dtype=object)
                cells = []
                for alpha in (0.05, 0.05 / GAPS_CPU_FAMILY):
                    sim = GroupShiftSimulator(sc, np.random.default_rng(7 + seeds), groups, "V-VI", gain, 0.15)
                    r, lo, hi = rate(sim, "worst_group_accuracy", groups, reps, boot, alpha)
                    cells.append(f"{100 * r:5.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]")
                print(f"gaps_cpu: seed sd {100 * sd:.1f}, worst group 15 points behind, narrowed by {100 * gain:.0f}, "
                      f"seeds {seeds:2d}: power alone {cells[0]}, worst-case BH over {GAPS_CPU_FAMILY} {cells[1]}")


def gaps_cpu_sequential(reps: int, boot: int) -> None:
    """The gaps_cpu preset's sequential design: its main comparison looked at after 12, 24, 36 and
    48 seeds per arm (O'Brien–Fleming, α = 0.05), each look's gap test on that look's seeds, as
    `experiment run gaps_cpu --until-decided --max-seeds 48 --looks 4` does. Under two nulls (the
    worst group 15 points behind in both arms, not narrowed; and that with an image × arm
    interaction) and with the group narrowed by 5 or 10 points; the per-seed sd of the worst-group
    difference each setting gives is printed beside it (the 12-seed pilot measured 8.9 points)."""
    design = SequentialDesign.spaced(12, 48, 4)
    groups = np.array(["I-II", "III-IV", "V-VI"] * 99, dtype=object)

    def test(a, b, sa, sb):
        res = gap_test("worst_group_accuracy", list(a), list(b), labels, groups, 9, sa, sb, reps=boot)
        return res.p_value, equivalence_p(res.difference, res.se, res.df)

    for sd in (0.03, 0.079):
        for null, gain, inter in (("paired", 0.0, 0.0), ("interaction", 0.0, 1.0), ("paired", 0.05, 0.0),
                                  ("paired", 0.10, 0.0)):
            sc = Scenario(null, 48, sd, interaction_sd=inter, n_classes=9, per_class=33)

            def simulator(scenario, rng, gain=gain):
                return GroupShiftSimulator(scenario, rng, groups, "V-VI", gain, 0.15)

            probe = simulator(sc, np.random.default_rng(1))
            labels = probe.classes
            diff_sd = np.mean([(_worst(a, groups) - _worst(b, groups)).std(ddof=1)
                               for a, b, _, _ in (probe.draw() for _ in range(20))])
            r = sequential_rates(sc, design, reps, seed=11, simulator=simulator, test=test)
            print(f"gaps_cpu sequential {list(design.looks)}: seed sd {100 * sd:.1f}, {null:11s} narrowed by "
                  f"{100 * gain:3.0f}: claims {100 * r['rate']:5.1f} % [{100 * r['mc_low']:.1f}, "
                  f"{100 * r['mc_high']:.1f}], mean seeds per arm {r['mean_seeds']:.1f}, naive optional stopping "
                  f"{100 * r['naive_rate']:.1f} %; per-seed difference sd {100 * diff_sd:.1f} points")


def _worst(m: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each run's worst-group accuracy."""
    return np.min([m[:, groups == g].mean(axis=1) for g in np.unique(groups)], axis=0)


GAPS_CPU_FAMILY = 56  # the gaps_cpu report's exploratory gap family: 19 pairs of arms × 3 outcomes, less the main one


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--boot", type=int, default=100)
    ap.add_argument("--design", choices=["gaps_cpu"], default=None)
    ap.add_argument("--sequential", action="store_true", help="with --design: the preset's sequential design")
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}; threads: {os.cpu_count()}; reps {args.reps}, "
          f"bootstrap {args.boot}")
    t0 = time.perf_counter()
    if args.design == "gaps_cpu":
        (gaps_cpu_sequential if args.sequential else gaps_cpu_power)(args.reps, args.boot)
        print(f"{time.perf_counter() - t0:.0f} s")
        return
    for null, inter in (("paired", 0.0), ("interaction", 1.0)):
        for seeds in (3, 5, 10):
            sc = Scenario(null, seeds, 0.08, interaction_sd=inter, n_classes=4, per_class=40)
            groups = skin_groups(sc.n_classes * sc.per_class)
            for outcome in OUTCOMES:
                r, lo, hi = rate(StudySimulator(sc, np.random.default_rng(seeds)), outcome, groups, args.reps,
                                 args.boot)
                print(f"null {null:11s} seeds {seeds:2d} {outcome:21s} rejects {100 * r:5.1f} % "
                      f"[{100 * lo:.1f}, {100 * hi:.1f}]")
    for seeds in (3, 5, 10):
        for gain, handicap in ((0.10, 0.15), (0.15, 0.20)):
            sc = Scenario("paired", seeds, 0.03, n_classes=4, per_class=100)
            groups = skin_groups(sc.n_classes * sc.per_class)
            sim = GroupShiftSimulator(sc, np.random.default_rng(100 + seeds), groups, "V-VI", gain, handicap)
            for outcome in ("worst_group_accuracy", "group_gap"):
                r, lo, hi = rate(sim, outcome, groups, args.reps, args.boot)
                print(f"power: group V-VI {100 * handicap:.0f} points behind, +{100 * gain:.0f} in arm A, seeds "
                      f"{seeds:2d}, {outcome:21s} {100 * r:5.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]")
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
