"""The pairs of arms a remedy study compares, and what each run of them holds.

A remedy is a real-only arm of the grid: balanced sampling (``sampling = "balanced"``), class
weighting (``class_weighting = "balanced"``) or focal loss (``loss = "focal"``). The gap tables
(analysis/remedies.py) and the study's main comparison (analysis/main_comparison.py) pair arms
the same way; this module is that one way, so both read a comparison with the same name and the
same runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermsynth.analysis.gap_outcomes import GapTest
from dermsynth.analysis.summary import (
    add_method_column,
    all_degenerate,
    arm_keys,
    canonical,
    matched_cells,
    test_predictions,
    varying_keys,
)

REMEDY_DEFAULTS = {"sampling": "uniform", "class_weighting": "none", "loss": "cross_entropy"}
NO_REMEDY = "none"


def remedy_label(row: pd.Series) -> str:
    """The remedies a run used, in words ("none" for plain cross-entropy and uniform batches)."""
    parts = []
    if row.get("sampling", "uniform") == "balanced":
        parts.append("balanced sampling")
    if row.get("class_weighting", "none") == "balanced":
        parts.append("class weighting")
    if row.get("loss", "cross_entropy") == "focal":
        parts.append(f"focal loss (γ = {float(row.get('focal_gamma', 2.0)):g})")
    return " + ".join(parts) or NO_REMEDY


def with_remedies(table: pd.DataFrame) -> pd.DataFrame:
    """The results table with every remedy field (records from before a field existed: its default)."""
    t = add_method_column(table)
    for col, default in {**REMEDY_DEFAULTS, "focal_gamma": 2.0}.items():
        t[col] = t[col].fillna(default) if col in t else default
    return t.assign(remedy=[remedy_label(r) for _, r in t.iterrows()])


def is_remedy_study(table: pd.DataFrame) -> bool:
    t = with_remedies(table)
    return bool(((t["synthetic_per_real"] == 0) & (t["remedy"] != NO_REMEDY)).any()
                and (t["synthetic_per_real"] > 0).any())


def as_remedy_axis(t: pd.DataFrame) -> pd.DataFrame:
    """The remedy as one matching field (``sampling`` holds its label; the other remedy fields are
    made equal), so that matched_cells pairs an arm with the real-only cell of the same remedy."""
    return t.assign(sampling=t["remedy"], class_weighting="none", loss="cross_entropy", focal_gamma=2.0)


def run_arrays(rec: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = test_predictions(rec)
    classes = list(rec["classes"])
    return t["correct"], np.array([classes.index(x) for x in t["label"]]), t["skin_group"]


def gap_pairs(table: pd.DataFrame):
    """(what, arm runs, reference runs) for the gap comparisons: synthetic vs its baseline (same
    remedy), synthetic without a remedy vs each remedy, and each remedy vs no remedy."""
    t = with_remedies(table)
    for cell, arm, ref in matched_cells(t):
        yield f"{describe_arm(cell)} vs real only ({arm['remedy'].iloc[0]})", arm, ref
    remedies = sorted(set(t.loc[(t["synthetic_per_real"] == 0) & (t["remedy"] != NO_REMEDY), "remedy"]))
    syn = t[(t["synthetic_per_real"] > 0) & (t["remedy"] == NO_REMEDY)]
    if remedies and len(syn):
        tagged = as_remedy_axis(pd.concat([syn.assign(remedy=r) for r in remedies]
                                           + [t[(t["synthetic_per_real"] == 0) & (t["remedy"] == r)]
                                              for r in remedies], ignore_index=True))
        for cell, arm, ref in matched_cells(tagged):
            yield f"{describe_arm(cell, with_remedy=False)} vs {ref['remedy'].iloc[0]} alone", arm, ref
    real = t[t["synthetic_per_real"] == 0]
    plain = real[real["remedy"] == NO_REMEDY]
    keys = [k for k in varying_keys(real) if k not in (*REMEDY_DEFAULTS, "focal_gamma", *arm_keys())]
    for name in remedies:
        cell = real[real["remedy"] == name]
        for values, arm in cell.groupby(keys, dropna=False) if keys else [((), cell)]:
            ref = plain
            for k, v in zip(keys, values if isinstance(values, tuple) else (values,), strict=True):
                ref = ref[[canonical(x) == canonical(v) for x in ref[k]]]  # unset (NaN) equals unset
            if len(ref):
                yield f"{name} vs no remedy" + "".join(f", {k} {v}" for k, v in zip(keys, np.atleast_1d(values),
                                                                                       strict=False)), arm, ref


def describe_arm(cell: dict, with_remedy: bool = True) -> str:
    skip = {"synthetic_per_real", "sampling", "class_weighting", "loss", "focal_gamma", "remedy"}
    extra = [f"{k} {v}" for k, v in cell.items()  # the arm's other fields, where not at their defaults
             if k not in skip and v is not None and v == v and str(v) not in ("none", "per_real", "None")]
    return f"{int(cell['synthetic_per_real'])} synthetic per real" + (f" ({', '.join(extra)})" if extra else "")


def gap_row(what: str, res: GapTest, n_test: int, arm: pd.DataFrame, ref: pd.DataFrame, family: str) -> dict:
    """One row of a gap table: the comparison, its outcome in both arms and its gap test."""
    return {"comparison": what, "outcome": res.outcome, "value_arm": res.value_a, "value_reference": res.value_b,
            "difference": res.difference, "p_seed": res.p_value, "seed_ci_low": res.ci_low,
            "seed_ci_high": res.ci_high, "seed_se": res.se, "seed_df": res.df, "seed_sd": res.seed_sd,
            "seed_image_var": res.image_variance, "seeds": res.seeds, "n_test": n_test,
            "degenerate": all_degenerate(arm, ref), "family": family}
