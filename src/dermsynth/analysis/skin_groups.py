"""Fig. 5's statistics: does synthetic data change accuracy within each skin-type group?

Per group, every cell with synthetic data is compared with its real-only baseline on that
group's test images only (n = the group's test size, not the whole test set), with a
two-sample proportion test, a paired bootstrap CI (test images and seeds) and
Benjamini–Hochberg over group × method × transforms (the figure's family). For binary tasks
(DDI: malignant vs benign) AUROC per group is reported beside accuracy, as DDI's authors do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dermsynth.analysis.seed_variance import seed_aware_test
from dermsynth.analysis.summary import all_degenerate, matched_cells, test_predictions
from dermsynth.analysis.verdicts import finish_families, seed_columns, significant, verdict_clause
from dermsynth.stats import bootstrap_difference, compare


def _per_group(rec: dict) -> dict[str, dict]:
    """group → correctness vector (test-id order) and, for binary tasks, the positive-class scores."""
    t = test_predictions(rec)
    groups, truth, probs = t["skin_group"], t["label"], t["probabilities"]
    out = {}
    for g in sorted({g for g in groups if g is not None}):
        sel = groups == g
        entry = {"correct": t["correct"][sel]}
        if probs.ndim == 2 and probs.shape[1] == 2:
            entry["y"] = (truth[sel] == rec["classes"][1]).astype(int)
            entry["score"] = probs[sel, 1]
        out[g] = entry
    return out


def _auroc(entries: list[dict]) -> float | None:
    vals = [roc_auc_score(e["y"], e["score"]) for e in entries if "y" in e and len(set(e["y"])) == 2]
    return float(np.mean(vals)) if vals else None


def group_comparisons(table: pd.DataFrame, records: list[dict], test: str = "prop", correct: bool = True,
                      reps: int = 1000) -> pd.DataFrame:
    """One row per (cell with synthetic data, skin-type group); BH over all rows."""
    by_run = {rec["run_id"]: _per_group(rec) for rec in records}
    rows = []
    for cell, arm, ref in matched_cells(table):
        groups = sorted(set.intersection(*(set(by_run[r]) for r in [*arm["run_id"], *ref["run_id"]])))
        for g in groups:
            a = [by_run[r][g] for r in arm["run_id"]]
            b = [by_run[r][g] for r in ref["run_id"]]
            ca, cb = np.stack([e["correct"] for e in a]), np.stack([e["correct"] for e in b])
            n = ca.shape[1]
            pa, pb = float(ca.mean()), float(cb.mean())
            diff, lo, hi = bootstrap_difference(ca, cb, reps=reps, seeds_a=arm["seed"].tolist(),
                                                seeds_b=ref["seed"].tolist())
            rows.append({**cell, "skin_group": g, "n_group": n, "acc_synthetic": pa, "acc_real_only": pb,
                         "difference": diff, "diff_ci_low": lo, "diff_ci_high": hi,
                         "p_value": compare(pa, pb, n, test, correct).p_value,
                         "auroc_synthetic": _auroc(a), "auroc_real_only": _auroc(b), "runs": len(arm),
                         "degenerate": all_degenerate(arm, ref),
                         **seed_columns(seed_aware_test(ca, cb, arm["seed"].tolist(), ref["seed"].tolist()))})
    out = finish_families(pd.DataFrame(rows), name="with vs without synthetic data, per skin-type group")
    if len(out) and out["auroc_synthetic"].isna().all():
        out = out.drop(columns=["auroc_synthetic", "auroc_real_only"])
    return out


def group_summary(comps: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    if comps is None or not len(comps):
        return []
    sig = comps[significant(comps, alpha)]
    paper = int((comps["p_bh"] < alpha).sum())
    lines = [f"Per skin-type group: {len(sig)} of {len(comps)} group comparisons significant by the seed-aware test "
             f"after BH (family: group × method × transforms; the paper's test: {paper})."]
    for _, r in sig.iterrows():
        lines.append(f"{r['skin_group']}, {_cell_name(r)}: {100 * r['acc_real_only']:.1f} % → "
                     f"{100 * r['acc_synthetic']:.1f} % (n = {int(r['n_group'])} test images), "
                     f"{verdict_clause(r, alpha)}.")
    return lines


def _cell_name(row: pd.Series) -> str:
    """The cell a group comparison speaks of, so that sentences never read as contradicting each other."""
    parts = [str(row["method"])]
    if "n_real" in row:
        parts.append(f"{int(row['n_real'])} real per class")
    if "synthetic_per_real" in row:
        parts.append(f"{int(row['synthetic_per_real'])} synthetic per real")
    if "transforms" in row:
        parts.append("transforms " + ("on" if str(row["transforms"]) in ("True", "true", "1") else "off"))
    if "generator_finetune" in row and not pd.isna(row["generator_finetune"]):
        parts.append(f"generator fine-tuning {row['generator_finetune']}")
    return ", ".join(parts)
