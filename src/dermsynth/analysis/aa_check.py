"""The A/A check: how often each test calls two arms of identical runs different, on a study's own cell.

``dermsynth experiment calibrate`` trains one real-only cell of a study with K seeds (10 by
default). Every way of drawing two disjoint arms of S seeds from them (S = the study's own
seed count; 630 splits for K = 10, S = 2; 126 for S = 5) is an A/A comparison: the arms
differ only by chance, so a test at 5 % should call about 5 % of them significant. Both the
paper's test and the seed-aware test are applied to every split; their rejection rates, the
seed sd, and what that sd means for power (the effect the study's seeds detect with 80 %
power, and the seeds a 5- or 10-point effect needs) go to ``OUT/analysis/calibration/`` where
the report shows them.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from dermsynth import files as dio
from dermsynth.analysis.report_sections import Section, fmt_table
from dermsynth.analysis.seed_variance import (
    design_se,
    detectable_effect,
    seed_aware_test,
    seed_sd_upper,
    seeds_needed,
)
from dermsynth.errors import StatisticsError
from dermsynth.stats import prop_test

ALPHA = 0.05
EFFECTS = (0.05, 0.10)


def calibration_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / "analysis" / "calibration" / "calibration.json"


def aa_splits(k: int, per_arm: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every unordered pair of disjoint ``per_arm``-subsets of ``k`` seeds (each A/A comparison once)."""
    if per_arm < 2 or 2 * per_arm > k:
        raise StatisticsError(f"an A/A check with {per_arm} seeds per arm needs ≥ {2 * max(per_arm, 2)} seeds "
                              f"of the cell (got {k}); pass --seeds {2 * max(per_arm, 2)} or more")
    out = []
    for a in itertools.combinations(range(k), per_arm):
        rest = [i for i in range(k) if i not in a]
        out += [(a, b) for b in itertools.combinations(rest, per_arm) if a < b]
    return out


def _split_rates(c: np.ndarray, acc: np.ndarray, splits, alpha: float) -> tuple[float, float]:
    n = c.shape[1]
    paper = seed = 0
    for a, b in splits:
        paper += prop_test(float(acc[list(a)].mean()), float(acc[list(b)].mean()), n, n).p_value < alpha
        seed += seed_aware_test(c[list(a)], c[list(b)]).p_value < alpha
    return paper / len(splits), seed / len(splits)


def aa_rates(correct: np.ndarray, per_arm: int, alpha: float = ALPHA) -> dict:
    """A/A false-positive rates of the paper's test and of the seed-aware test on a seeds × images
    correctness matrix of one cell (arms paired by position, as a study pairs its seeds).

    Each rate comes with a 95 % interval from a jackknife over the cell's seeds (the rate
    recomputed with each seed left out): the splits reuse the same seeds, so they are not
    independent trials and a binomial interval over the splits would be far too narrow. Where
    leaving a seed out leaves too few for two arms, the interval is NaN.
    """
    c = np.asarray(correct, dtype=float)
    k, n = c.shape
    splits = aa_splits(k, per_arm)
    acc = c.mean(axis=1)
    paper, seed = _split_rates(c, acc, splits, alpha)
    intervals = {"paper_test_false_positive_interval": [float("nan")] * 2,
                 "seed_aware_false_positive_interval": [float("nan")] * 2}
    if k - 1 >= 2 * per_arm:
        sub = aa_splits(k - 1, per_arm)
        jack = np.array([_split_rates(np.delete(c, i, axis=0), np.delete(acc, i), sub, alpha) for i in range(k)])
        for j, (key, full) in enumerate(zip(intervals, (paper, seed), strict=True)):
            se = float(np.sqrt((k - 1) / k * ((jack[:, j] - jack[:, j].mean()) ** 2).sum()))
            intervals[key] = [max(full - 1.96 * se, 0.0), min(full + 1.96 * se, 1.0)]
    return {"seeds": k, "seeds_per_arm": per_arm, "comparisons": len(splits), "n_test": n,
            "seed_sd": float(acc.std(ddof=1)), "accuracy_mean": float(acc.mean()),
            "accuracy_min": float(acc.min()), "accuracy_max": float(acc.max()),
            "paper_test_false_positive_rate": paper, "seed_aware_false_positive_rate": seed, **intervals,
            "alpha": alpha}


INTERACTION_SDS = (0.6, 1.0)


def interaction_null_rates(accuracy: float, seed_sd: float, per_arm: int, n_test: int, n_classes: int,
                           reps: int = 1000, alpha: float = ALPHA) -> list[dict]:
    """The seed-aware test's rejection rate under an image × arm interaction null fitted to a
    cell's own accuracy, seed sd and test-set size (dermsynth.analysis.null_simulation): the null
    an A/A split cannot show, since identical arms never move individual images. One row per
    interaction sd (logit scale), each with its 95 % Monte-Carlo interval."""
    from dermsynth.analysis.null_simulation import Scenario, rejection_rate

    k = max(int(n_classes), 1)
    acc = float(np.clip(accuracy, 0.02, 0.98))
    return [{key: row[key] for key in ("interaction_sd", "seeds", "seed_sd", "reps", "rate", "mc_low", "mc_high")}
            for row in (rejection_rate(Scenario("interaction", max(per_arm, 2), max(float(seed_sd), 1e-3),
                                                interaction_sd=w, n_classes=k, per_class=max(n_test // k, 1),
                                                accuracy=acc), reps, seed=i, alpha=alpha)
                        for i, w in enumerate(INTERACTION_SDS))]


def interval_text(rate: float, interval) -> str:
    lo, hi = (interval or [float("nan")] * 2)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{100 * rate:.1f} %"
    return f"{100 * rate:.1f} % (95 % interval {100 * lo:.1f}–{100 * hi:.1f})"


def power_summary(seed_sd: float, seeds: int, image_variance: float = 0.0) -> dict:
    """What a seed sd means for a study with ``seeds`` seeds per arm, arms paired by seed.

    The sd of a per-seed difference is taken as √2 × the per-seed sd (no benefit assumed from
    pairing: a conservative planning figure; pairing that helps makes the real test stronger).
    """
    diff_sd = float(np.sqrt(2) * seed_sd)
    se, df = design_se(diff_sd, seeds, image_variance)
    out = {"seeds_per_arm": seeds, "difference_sd": diff_sd,
           "detectable_effect": detectable_effect(se, df) if seeds >= 2 else float("nan")}
    for e in EFFECTS:
        out[f"seeds_for_{round(100 * e)}_points"] = seeds_needed(e, diff_sd, image_variance)
    return out


def planned_power(spec, out_dir: str | Path | None, target_effect: float | None = None) -> dict | None:
    """What the planned seeds can detect, from the study's calibration (if ``out_dir`` holds one)
    or from ``seed_sd`` in the config; None when neither says how much seeds vary.

    From a calibration of K seeds the plan uses the 90 % upper confidence bound of its seed sd
    (:func:`seed_sd_upper`) and says so; ``seed_sd`` in the config is taken as given (its
    uncertainty is unknown here). ``target_effect``: also the seeds per arm it needs."""
    path = calibration_path(out_dir) if out_dir is not None else None
    if path is not None and path.exists():
        cal = dio.read_json(path)
        measured, k = float(cal["seed_sd"]), int(cal["seeds"])
        sd = seed_sd_upper(measured, k)
        source = (f"90 % upper bound of the calibration's {100 * measured:.1f} points from {k} seeds ({path})")
    elif spec.seed_sd is not None:
        measured, sd, source = float(spec.seed_sd), float(spec.seed_sd), "seed_sd in the config"
    else:
        return None
    seeds = len(spec.seed_list())
    out = {**power_summary(sd, max(seeds, 2)), "seed_sd": sd, "seed_sd_measured": measured, "source": source,
           "testable": seeds >= 2}
    if target_effect:
        out["target_effect"] = float(target_effect)
        out["seeds_for_target"] = seeds_needed(float(target_effect), float(np.sqrt(2) * sd))
    return out


def power_line(p: dict) -> str:
    """The plan's sentence about power."""
    target = ""
    if p.get("target_effect"):
        target = (f"; {100 * p['target_effect']:.0f} points (--target-effect) need "
                  f"{p['seeds_for_target'] or '> 200'} seeds per arm")
    if not p["testable"]:
        return (f"1 seed per arm: no comparison can be tested across seeds (seed sd {100 * p['seed_sd']:.1f} "
                f"points, {p['source']}); 5 points need {p['seeds_for_5_points'] or '> 200'} seeds per arm{target}")
    return (f"with {p['seeds_per_arm']} seeds per arm (seed sd {100 * p['seed_sd']:.1f} points, {p['source']}) "
            f"{effect_text(p['detectable_effect'])}; 5 points need "
            f"{p['seeds_for_5_points'] or '> 200'} seeds per arm, 10 points {p['seeds_for_10_points'] or '> 200'}"
            f"{target}")


def interaction_line(cal: dict) -> str:
    """The sentence on the simulated image × arm interaction null fitted to the calibration cell."""
    parts = [f"w sd {r['interaction_sd']:g}: {100 * r['rate']:.1f} % (95 % interval {100 * r['mc_low']:.1f}–"
             f"{100 * r['mc_high']:.1f}, {r['reps']} simulated studies)" for r in cal["interaction_null"]]
    return ("Under an image × arm interaction null fitted to this cell (its accuracy, seed sd and test set; synthetic "
            "data moving individual test images by ±w/2 on the logit scale, no effect on average), the seed-aware "
            "test rejected " + "; ".join(parts) + ".")


def effect_text(detectable: float) -> str:
    """'the smallest effect detected with 80 % power is 12.3 points', or that none is (> 100 points)."""
    if not np.isfinite(detectable):
        return "the detectable effect is unknown"
    if detectable > 1:
        return "no possible effect (≤ 100 points) is detected with 80 % power"
    return f"the smallest effect detected with 80 % power is {100 * detectable:.1f} points"


def write_calibration(out_dir: str | Path, result: dict) -> Path:
    return dio.write_json(calibration_path(out_dir), result)


def calibrate(spec, out_dir: str | Path, seeds: int = 10, where: dict[str, str] | None = None,
              workers: int = 1) -> dict:
    """Train ``seeds`` seeds of one real-only cell, run the A/A check at the study's seed count, store it."""
    from dermsynth.analysis.summary import correctness
    from dermsynth.experiments.calibrate import calibration_runs

    cell, records = calibration_runs(spec, out_dir, seeds, where, workers)
    corr = correctness(records)
    matrix = np.stack([corr[r["run_id"]] for r in records])
    per_arm = len(spec.seed_list())
    result = aa_rates(matrix, max(per_arm, 2))
    if per_arm < 2:
        result["note"] = "the study has 1 seed per arm; the A/A check used 2 (with 1 nothing can be tested)"
    fields = ("n_real", "transforms", "backbone", "image_size", "dataset")
    result["cell"] = ", ".join(f"{f} {getattr(cell, f)}" for f in fields)
    result["study_seeds"] = per_arm
    result["accuracies"] = [float(m.mean()) for m in matrix]
    result["power"] = power_summary(result["seed_sd"], max(per_arm, 2))
    classes = {lab for r in records for lab in r["predictions"]["label"]}
    result["interaction_null"] = interaction_null_rates(result["accuracy_mean"], result["seed_sd"],
                                                        max(per_arm, 2), matrix.shape[1], len(classes))
    write_calibration(out_dir, result)
    return result


def observed_seed_sd(table: pd.DataFrame) -> tuple[float, int] | None:
    """Pooled sd of accuracy over seeds within the study's real-only cells, and how many cells."""
    from dermsynth.analysis.summary import varying_keys

    base = table[(table["synthetic_per_real"] == 0)
                 & (table["repeat_real"] == 1 if "repeat_real" in table else True)]
    keys = [k for k in varying_keys(table) if k in base.columns] or ["n_real"]
    parts = [g["accuracy"].to_numpy() for _, g in base.groupby(keys, dropna=False) if len(g) > 1]
    if not parts:
        return None
    ss = sum(((p - p.mean()) ** 2).sum() for p in parts)
    dof = sum(len(p) - 1 for p in parts)
    return float(np.sqrt(ss / dof)), len(parts)


def calibration_section(out_dir: str | Path, table: pd.DataFrame) -> Section:
    """The report's 'Seed variance, A/A check and power' section."""
    seeds = int(table["seed"].nunique())
    path = calibration_path(out_dir)
    rows, text = [], []
    if path.exists():
        cal = dio.read_json(path)
        text.append(
            f"A/A check ({cal['cell']}): {cal['seeds']} seeds of one real-only cell, accuracy "
            f"{100 * cal['accuracy_min']:.1f}–{100 * cal['accuracy_max']:.1f} % (seed sd {100 * cal['seed_sd']:.1f} "
            f"points); of {cal['comparisons']} comparisons of two arms of {cal['seeds_per_arm']} identical-setting "
            f"seeds, the paper's test called "
            f"{interval_text(cal['paper_test_false_positive_rate'], cal.get('paper_test_false_positive_interval'))} "
            "significant and the seed-aware test "
            f"{interval_text(cal['seed_aware_false_positive_rate'], cal.get('seed_aware_false_positive_interval'))} "
            f"(nominal {100 * cal['alpha']:.0f} %). The splits reuse the same {cal['seeds']} seeds, so each rate's "
            "interval comes from a jackknife over the seeds.")
        text += [interaction_line(cal)] if cal.get("interaction_null") else []
        sd, source = cal["seed_sd"], "the calibration"
    else:
        obs = observed_seed_sd(table)
        if obs is None:
            return Section("Seed variance and power", "", "Each cell has one seed: the seed-to-seed variance is "
                           "unknown, so no comparison can be tested across seeds. Run ≥ 2 seeds (the paper: 5).")
        sd, cells = obs
        source = f"the study's {cells} real-only cells (pooled)"
        text.append("No A/A calibration of this study yet: `dermsynth experiment calibrate CONFIG` trains one "
                    "real-only cell with 10 seeds and measures how often each test calls identical arms different.")
    for s in sorted({seeds, 2, 3, 5, 10}):
        if s < 2:
            continue
        p = power_summary(sd, s)
        det = p["detectable_effect"]
        rows.append({"seeds per arm": s, "effect detected with 80 % power (points)":
                     round(100 * det, 1) if det <= 1 else "> 100",
                     "seeds for 5 points": p["seeds_for_5_points"] or "> 200",
                     "seeds for 10 points": p["seeds_for_10_points"] or "> 200"})
    text.append(f"Power from the seed sd of {100 * sd:.1f} points ({source}), arms paired by seed, no pairing benefit "
                f"assumed: this study has {seeds} seed(s) per arm.")
    return Section("Seed variance, A/A check and power", fmt_table(pd.DataFrame(rows)), " ".join(text))
