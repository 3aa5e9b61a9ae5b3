"""Does adding seeds until decided keep the error rates, and how many runs does it save?

Simulated comparisons (dermsynth.analysis.null_simulation: 9 classes × 40 test images, image
difficulty, a seed effect shared by paired arms, a run shift and a run × class effect), looked
at as ``experiment run --until-decided`` looks: the first n seeds per arm at each look of a
group-sequential design, stopping when the seed-aware test crosses its boundary or the
equivalence test its own. Per design and null: the false-positive rate with its 95 %
Monte-Carlo interval, beside naive optional stopping (stop at the first p < 0.05) on the same
draws. Per planted effect: the sequential design's power and mean seeds per arm, beside the
fixed design of the same power (the fewest seeds whose fixed test is at least as powerful,
simulated on the same scenario): the ratio is the share of runs the sequential study uses.

    python bench/sequential_design.py [--reps 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform

from dermsynth.analysis.null_simulation import Scenario, rejection_rate, sequential_rates
from dermsynth.analysis.sequential import SequentialDesign
from dermsynth.models.precision_rule import cpu_name

DESIGNS = [SequentialDesign((3, 6, 10)), SequentialDesign((5, 10, 15)), SequentialDesign((10, 15, 20)),
           SequentialDesign((3, 6, 10), spending="pocock")]
NULLS = [Scenario("paired", 0, 0.08), Scenario("paired", 0, 0.03), Scenario("aa_disjoint", 0, 0.08),
         Scenario("interaction", 0, 0.08, interaction_sd=1.0), Scenario("interaction", 0, 0.03, interaction_sd=0.6)]
EFFECTS = [Scenario("effect", 0, 0.08, effect=0.10), Scenario("effect", 0, 0.03, effect=0.05),
           Scenario("effect", 0, 0.08, effect=0.05)]


def fixed_of_equal_power(scenario: Scenario, target: float, most: int, reps: int,
                         seed: int) -> tuple[int | None, float]:
    """The fewest seeds per arm whose fixed design's simulated power reaches ``target``."""
    for n in range(2, most + 1):
        power = rejection_rate(Scenario(scenario.null, n, scenario.seed_sd, effect=scenario.effect), reps, seed)["rate"]
        if power >= target:
            return n, power
    return None, float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    print(f"CPU: {cpu_name()} ({platform.machine()}), {os.cpu_count()} threads; {args.reps} simulated studies a row")
    rows = []
    for design in DESIGNS:
        name = f"looks {list(design.looks)}, {design.spending_name}"
        for sc in NULLS:
            r = sequential_rates(sc, design, args.reps, seed=11)
            rows.append({"design": name, **r})
            what = sc.null + (f" (interaction sd {sc.interaction_sd})" if sc.null == "interaction" else "")
            print(f"{name:44s} {what:34s} seed sd {100 * sc.seed_sd:.0f}: false positives "
                  f"{100 * r['rate']:.1f} % [{100 * r['mc_low']:.1f}, {100 * r['mc_high']:.1f}] vs naive stopping "
                  f"{100 * r['naive_rate']:.1f} %; mean seeds {r['mean_seeds']:.1f}")
        for sc in EFFECTS:
            r = sequential_rates(sc, design, args.reps, seed=12)
            n_fixed, fixed_power = fixed_of_equal_power(sc, r["rate"], design.looks[-1] + 10, args.reps, seed=12)
            ratio = r["mean_seeds"] / n_fixed if n_fixed else float("nan")
            rows.append({"design": name, **r, "fixed_seeds_equal_power": n_fixed, "fixed_power": fixed_power,
                         "runs_ratio": ratio})
            print(f"{name:44s} +{100 * sc.effect:.0f} points, seed sd {100 * sc.seed_sd:.0f}: power "
                  f"{100 * r['rate']:.1f} % from {r['mean_seeds']:.2f} seeds per arm on average; the fixed design "
                  f"of equal power needs {n_fixed} ({100 * fixed_power:.1f} %): runs ratio {ratio:.2f}")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
