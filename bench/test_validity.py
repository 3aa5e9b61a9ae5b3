"""Is the seed-aware test valid at every seed count, and how much power does it keep?

Simulated studies (dermsynth.analysis.null_simulation: 9 classes × 40 test images, image
difficulty, a seed effect shared by paired arms, a run shift and a run × class effect) under
three nulls — paired, A/A with disjoint seeds, and an image × arm interaction — at 2–10 seeds
per arm and per-seed sd 3 and 8 points, then planted +5 / +10-point effects at 3, 5 and 10
seeds. Each row: the rejection rate at α = 0.05 with its 95 % Monte-Carlo interval, for the
test as it is (df of the seed term) and, side by side on the same draws, the rule it replaced
(Satterthwaite's df over every mean square; 1 df at 2 seeds). Then the coverage of a cell's
accuracy CI (seed-aware, the paper's Wald with n = test images, the two-level bootstrap) at
2, 3, 5 and 10 seeds.

    python bench/test_validity.py [--reps 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from dermsynth.analysis.null_simulation import Scenario, StudySimulator, null_grid, power_grid
from dermsynth.analysis.seed_variance import _two_way, accuracy_interval, seed_aware_test
from dermsynth.stats import bootstrap_accuracy, wald_ci


def satterthwaite_p(a, b, seeds_a, seeds_b) -> float:
    """The replaced rule, for the side-by-side column: SE as now, df by Satterthwaite over every
    mean square (1 at 2 seeds), a zero SE untestable."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    s, n = a.shape
    if seeds_a == seeds_b:
        row, col, res = _two_way(a - b)
        seed_terms, image_terms, resid_terms = [(row, s - 1)], [(col, n - 1)], [(res, (s - 1) * (n - 1))]
    else:
        (ra, _, ea), (rb, _, eb) = _two_way(a), _two_way(b)
        e = a.mean(axis=0) - b.mean(axis=0)
        seed_terms, image_terms = [(ra, s - 1), (rb, s - 1)], [(float(e.var(ddof=1) / n), n - 1)]
        resid_terms = [(ea, (s - 1) * (n - 1)), (eb, (s - 1) * (n - 1))]
    image = sum(v for v, _ in image_terms) - sum(v for v, _ in resid_terms)
    used = seed_terms + (image_terms + resid_terms if image > 0 else [])
    var = sum(v for v, _ in seed_terms) + max(image, 0.0)
    denom = sum(v * v / d for v, d in used if d > 0 and v != 0)
    df = 1.0 if s == 2 else (var * var / denom if denom > 0 else np.inf)
    if var <= 0:
        return float("nan")
    return float(2 * stats.t.sf(abs(a.mean() - b.mean()) / np.sqrt(var), df))


def rates(scenario, reps: int, seed: int) -> dict:
    sim = StudySimulator(scenario, np.random.default_rng(seed))
    now = before = 0
    for _ in range(reps):
        a, b, sa, sb = sim.draw()
        p = seed_aware_test(a, b, sa, sb).p_value
        now += bool(np.isfinite(p) and p < 0.05)
        q = satterthwaite_p(a, b, sa, sb)
        before += bool(np.isfinite(q) and q < 0.05)
    row = {"null": scenario.null, "seeds": scenario.seeds, "seed_sd": scenario.seed_sd,
           "interaction_sd": scenario.interaction_sd, "effect": scenario.effect, "reps": reps}
    for name, k in (("now", now), ("before", before)):
        lo, hi = proportion_confint(k, reps, alpha=0.05, method="wilson")
        row[name] = {"rate": k / reps, "mc_low": float(lo), "mc_high": float(hi)}
    return row


def coverage(seeds: int, seed_sd: float, reps: int, seed: int) -> dict:
    """How often each interval of a cell's accuracy covers its true expected accuracy (over seeds
    and test sets: the mean of many simulated cells' accuracies)."""
    sim = StudySimulator(Scenario("paired", seeds, seed_sd), np.random.default_rng(seed))
    cells = [sim.draw()[0] for _ in range(reps)]
    truth = float(np.mean([c.mean() for c in cells]))
    hit = {"seed_aware": 0, "wald": 0, "two_level_bootstrap": 0}
    for i, c in enumerate(cells):
        _, lo, hi = accuracy_interval(c)
        hit["seed_aware"] += bool(lo <= truth <= hi)
        lo, hi = wald_ci(c.mean(), c.shape[1])
        hit["wald"] += bool(lo <= truth <= hi)
        if i < reps // 4:  # the bootstrap is slow: a quarter of the cells
            _, lo, hi = bootstrap_accuracy(c, reps=400, seed=i)
            hit["two_level_bootstrap"] += bool(lo <= truth <= hi)
    counts = {"seed_aware": reps, "wald": reps, "two_level_bootstrap": reps // 4}
    return {"seeds": seeds, "seed_sd": seed_sd, **{k: hit[k] / counts[k] for k in hit}, "cells": counts}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()
    with open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), platform.processor())
    rows = [rates(sc, args.reps, seed=i) for i, sc in enumerate(null_grid(seed_counts=(2, 3, 4, 5, 6, 8, 10)))]
    rows += [rates(sc, args.reps, seed=1000 + i) for i, sc in enumerate(power_grid())]
    worst = max((r for r in rows if r["effect"] == 0), key=lambda r: r["now"]["mc_low"])
    cover = [coverage(s, sd, max(args.reps // 2, 200), seed=2000 + 10 * s + int(100 * sd))
             for s in (2, 3, 5, 10) for sd in (0.03, 0.08)]
    if args.json:
        print(json.dumps({"cpu": cpu, "threads": os.cpu_count(), "rows": rows, "coverage": cover,
                          "worst_null_mc_low": worst["now"]["mc_low"]}, indent=1))
        return
    print(f"CPU: {cpu}, {os.cpu_count()} threads; {args.reps} simulated studies per row, α = 0.05")
    print(f"{'null / effect':<22}{'seeds':>6}{'seed sd':>8}  {'now (seed df)':>22}  {'before (Satterthwaite)':>24}")
    for r in rows:
        what = (f"+{100 * r['effect']:.0f} points" if r["effect"] else
                r["null"] + (f" w={r['interaction_sd']}" if r["interaction_sd"] else ""))
        cols = [f"{100 * r[k]['rate']:5.1f} % [{100 * r[k]['mc_low']:4.1f}, {100 * r[k]['mc_high']:4.1f}]"
                for k in ("now", "before")]
        print(f"{what:<22}{r['seeds']:>6}{100 * r['seed_sd']:>7.0f}p  {cols[0]:>22}  {cols[1]:>24}")
    print(f"highest null rate now: {100 * worst['now']['rate']:.1f} % ({worst['null']}, {worst['seeds']} seeds, "
          f"sd {100 * worst['seed_sd']:.0f} points); its Monte-Carlo interval starts at "
          f"{100 * worst['now']['mc_low']:.1f} %")
    print("\ncoverage of a cell's expected accuracy by its 95 % CI (seed-aware / Wald n = test images / two-level "
          "bootstrap)")
    for c in cover:
        print(f"{c['seeds']:>3} seeds, seed sd {100 * c['seed_sd']:.0f} points: {100 * c['seed_aware']:5.1f} % / "
              f"{100 * c['wald']:5.1f} % / {100 * c['two_level_bootstrap']:5.1f} %  ({c['cells']['seed_aware']} cells)")


if __name__ == "__main__":
    main()
