"""Fig. S-2's statistics: one rare class brought to parity with synthetic images vs duplication.

Each run is one of three arms — *imbalanced* (the rare class down-sampled, nothing added),
*synthetic* (its real images topped up with k synthetic per real) or *duplication* (its real
images repeated, the control). Within each cell (same rare class and size, same other
settings) the synthetic arm is compared with the imbalanced baseline and with the
duplication control, for the rare class (n = that class's test images) and overall
(n = the test set), and duplication with the baseline; BH over the figure's comparisons.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from dermsynth.analysis.seed_variance import seed_aware_test
from dermsynth.analysis.summary import correctness, varying_keys
from dermsynth.analysis.verdicts import finish_family, seed_columns, significant, verdict_clause
from dermsynth.stats import bootstrap_difference, compare

# what makes a run one of the three arms (unset in the arms without synthetic data): never a cell key
ARM_FIELDS = ("synthetic_per_real", "synthetic_classes", "duplicate_classes", "synthetic_methods", "method",
              "generator_finetune", "synthetic_filter", "filter_keep")
PAIRS = (("synthetic", "imbalanced"), ("synthetic", "duplication"), ("duplication", "imbalanced"))


def _as_dict(value) -> dict:
    if isinstance(value, str):
        value = json.loads(value) if value.strip().startswith("{") else {}
    return value if isinstance(value, dict) else {}


def is_imbalance_study(table: pd.DataFrame) -> bool:
    """True when runs differ in a down-sampled class (``class_n_real``)."""
    return "class_n_real" in table and any(_as_dict(v) for v in table["class_n_real"])


def label_arms(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``rare_class``, ``rare_n`` and ``arm`` columns (runs without a rare class are dropped)."""
    t = table.copy()
    rare = [next(iter(_as_dict(v).items()), (None, None)) for v in t["class_n_real"]]
    t["rare_class"], t["rare_n"] = [r[0] for r in rare], [r[1] for r in rare]
    t = t[t["rare_class"].notna()].copy()
    dup = [bool(_as_dict(v)) for v in t["duplicate_classes"]]
    t["arm"] = np.where(t["synthetic_per_real"] > 0, "synthetic", np.where(dup, "duplication", "imbalanced"))
    t["rare_accuracy"] = [row.get(f"acc_class:{c}", np.nan) for c, (_, row) in zip(t["rare_class"], t.iterrows(),
                                                                                    strict=True)]
    return t


AGGREGATE = "all rare classes"


def _arm_matrix(runs: pd.DataFrame, arm: str, corr: dict[str, np.ndarray]) -> np.ndarray:
    """Correctness (seeds × images) of one arm, seeds in order."""
    return np.stack([corr[r] for r in runs.loc[runs["arm"] == arm].sort_values("seed")["run_id"]])


def imbalance_comparisons(table: pd.DataFrame, records: list[dict], test: str = "prop", correct: bool = True,
                          reps: int = 1000) -> pd.DataFrame:
    """One row per (rare class or the aggregate over rare classes, rare size, scope ∈ {rare class,
    overall}, pair of arms), BH-adjusted over all rows.

    The aggregate pools the rare classes' cells: for the rare-class scope their test images
    side by side (n = all rare-class test images); for the overall scope the mean over cells
    with n = the test set.
    """
    t = label_arms(table)
    if t.empty:
        return pd.DataFrame()
    others = [k for k in varying_keys(t) if k not in (*ARM_FIELDS, "class_n_real", "rare_class", "rare_n")]
    keys = ["rare_n", *others]
    by_run = {rec["run_id"]: rec for rec in records}
    rows = []
    for cell, group in t.groupby(keys, dropna=False):
        cell = dict(zip(keys, cell if isinstance(cell, tuple) else (cell,), strict=True))
        per_class = {c: runs for c, runs in group.groupby("rare_class")}
        for scope in ("rare class", "overall"):
            for a, b in PAIRS:
                mats = []
                for cls, runs in per_class.items():
                    if not ({a, b} <= set(runs["arm"])):
                        continue
                    corr = correctness([by_run[r] for r in runs["run_id"]], cls if scope == "rare class" else None)
                    ma, mb = _arm_matrix(runs, a, corr), _arm_matrix(runs, b, corr)
                    mats.append((ma, mb))
                    rows.append(_row({**cell, "rare_class": cls}, scope, a, b, ma, mb, ma.shape[1], test, correct,
                                     reps))
                if len(mats) > 1 and all(m[0].shape == mats[0][0].shape and m[1].shape == mats[0][1].shape
                                         for m in mats):
                    if scope == "rare class":  # each class's own test images, side by side
                        ma = np.concatenate([m[0] for m in mats], axis=1)
                        mb = np.concatenate([m[1] for m in mats], axis=1)
                    else:  # the same test images in every cell: one cluster per image (its mean over cells)
                        ma = np.mean([m[0] for m in mats], axis=0)
                        mb = np.mean([m[1] for m in mats], axis=0)
                    rows.append(_row({**cell, "rare_class": AGGREGATE}, scope, a, b, ma, mb, ma.shape[1], test,
                                     correct, reps))
    out = pd.DataFrame(rows)
    if not len(out):
        return out
    # the pooled rows answer the paper's question, the per-class rows another: one BH family each
    pooled = out["rare_class"] == AGGREGATE
    fams = [finish_family(out[m]).assign(family=name) for m, name in ((pooled, "pooled over rare classes"),
                                                                       (~pooled, "per rare class")) if m.any()]
    return pd.concat(fams).sort_index()


def _row(cell: dict, scope: str, a: str, b: str, ma: np.ndarray, mb: np.ndarray, n: int, test: str, correct: bool,
         reps: int) -> dict:
    pa, pb = float(ma.mean()), float(mb.mean())
    diff, lo, hi = bootstrap_difference(ma, mb, reps=reps)
    return {**cell, "scope": scope, "comparison": f"{a} vs {b}", "acc_a": pa, "acc_b": pb, "difference": diff,
            "diff_ci_low": lo, "diff_ci_high": hi, "p_value": compare(pa, pb, n, test, correct).p_value,
            "n_test": n, "runs": f"{len(ma)}/{len(mb)}", **seed_columns(seed_aware_test(ma, mb))}


def imbalance_summary(comps: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """Sentences from the comparisons, e.g. 'rare class psoriasis at 25 real: synthetic vs duplication …'."""
    if comps is None or not len(comps):
        return ["No imbalance comparison could be made (each cell needs its baseline, synthetic and "
                "duplication arms)."]
    lines = []
    main = comps[comps["comparison"] != "duplication vs imbalanced"]
    pooled = main[main["rare_class"] == AGGREGATE]
    # the aggregate when several classes were rare in turn (the paper's way), then what stands out
    per_class = main[main["rare_class"] != AGGREGATE]
    shown = pd.concat([pooled, per_class[significant(per_class, alpha)]]) if len(pooled) else main
    for _, r in shown.iterrows():
        lines.append(f"{r['rare_class']} at {int(r['rare_n'])} real, {r['scope']}: {r['comparison']} "
                     f"{100 * r['acc_a']:.1f} % vs {100 * r['acc_b']:.1f} % (n = {int(r['n_test'])} test images), "
                     f"{verdict_clause(r, alpha)}.")
    if len(pooled):
        lines.append(f"Per rare class (its own BH family): {len(per_class)} comparisons in the table below, "
                     f"{int(significant(per_class, alpha).sum())} significant by the seed-aware test "
                     f"({int((per_class['p_bh'] < alpha).sum())} by the paper's test).")
    return lines
