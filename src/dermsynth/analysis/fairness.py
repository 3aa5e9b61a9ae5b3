"""Calibration and fairness per cell, from the runs' test predictions: balanced accuracy,
macro F1, ROC AUC, expected calibration error, the gap between the best and the worst
skin-type group, and the equalized-odds difference — with and without synthetic data — and
a reliability diagram of real-only vs synthetic-data runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dermsynth.analysis.figures import OKABE_ITO, save_figure
from dermsynth.analysis.report_sections import Section, fmt_table, img_tag
from dermsynth.analysis.summary import add_method_column, test_predictions, varying_keys
from dermsynth.train.group_metrics import MIN_GROUP_N, calibration


def run_fairness_row(rec: dict) -> dict:
    m = rec["metrics"]
    fair = m.get("fairness", {})
    gaps = fair.get("gaps", {})
    return {"run_id": rec["run_id"], "balanced_acc": m.get("balanced_accuracy"), "macro_f1": m.get("macro_f1"),
            "auroc": m.get("auroc"), "ece": m.get("calibration", {}).get("ece"),
            "acc_gap_groups": gaps.get("accuracy", {}).get("gap"),
            "worst_group": gaps.get("accuracy", {}).get("worst"),
            "equalized_odds_diff": fair.get("equalized_odds_difference")}


def fairness_table(table: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """Per cell (means over seeds) of the metrics beyond accuracy."""
    cols = ["balanced_acc", "macro_f1", "auroc", "ece", "acc_gap_groups", "equalized_odds_diff"]
    per_run = pd.DataFrame([run_fairness_row(r) for r in records])
    per_run[cols] = per_run[cols].apply(pd.to_numeric, errors="coerce")
    t = add_method_column(table).drop(columns=[c for c in cols + ["worst_group"] if c in table])
    t = t.merge(per_run, on="run_id")
    keys = [k for k in varying_keys(t) if k != "synthetic_classes"] or ["method"]
    agg = t.groupby(keys, dropna=False)[cols].mean(numeric_only=True).reset_index()
    worst = t.groupby(keys, dropna=False)["worst_group"].agg(
        lambda v: v.dropna().mode().iloc[0] if v.notna().any() else None).reset_index(drop=True)
    out = agg.assign(worst_group=worst, runs=t.groupby(keys, dropna=False).size().to_numpy())
    return out.round({"macro_f1": 3, "auroc": 3, "ece": 3, "equalized_odds_diff": 3}).dropna(axis=1, how="all")


def fig_reliability(table: pd.DataFrame, records: list[dict], out: Path) -> Path | None:
    """Reliability diagram: real-only runs vs runs with synthetic data (pooled predictions)."""
    arms = {"real only": [], "with synthetic data": []}
    spr = dict(zip(table["run_id"], table["synthetic_per_real"], strict=True))
    for rec in records:
        arms["with synthetic data" if spr.get(rec["run_id"], 0) > 0 else "real only"].append(test_predictions(rec))
    fig = Figure(figsize=(4.2, 4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="#999999", lw=1)
    drawn, classes = False, sorted(records[0]["classes"])
    for i, (name, preds) in enumerate(arms.items()):
        if not preds:
            continue
        probs = np.concatenate([np.stack(p["probabilities"]) for p in preds])
        y = np.concatenate([[classes.index(lab) for lab in p["label"]] for p in preds])
        cal = calibration(np.asarray(y), probs)
        bins = pd.DataFrame(cal["bins"])
        ax.plot(bins["confidence"], bins["accuracy"], "o-", color=OKABE_ITO[5 + i],
                label=f"{name} (ECE {100 * cal['ece']:.1f} %)")
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("Reliability diagram (test images)", fontsize=9)
    return save_figure(fig, out, "calibration_reliability")


def fairness_section(out_dir: Path, table: pd.DataFrame, records: list[dict]) -> Section | None:
    if not records or "calibration" not in records[0]["metrics"]:
        return None
    frame = fairness_table(table, records)
    frame.to_csv(Path(out_dir) / "fairness.csv", index=False)
    fig = fig_reliability(table, records, Path(out_dir) / "figures")
    return Section("Calibration and fairness", fmt_table(frame) + (img_tag(fig) if fig else ""),
                   "Means over seeds. ece: expected calibration error (15 bins, lower is better); acc_gap_groups: "
                   f"accuracy of the best minus the worst skin-type group (groups with ≥ {MIN_GROUP_N} test images); "
                   "equalized_odds_diff: fairlearn's equalized-odds difference between skin-type groups (multi-class: "
                   "the worst class, one-vs-rest). FST groups are not skin tone, and small groups make gaps noisy.")
