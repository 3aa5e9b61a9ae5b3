"""Analysis of a reader study: can clinicians tell synthetic from real?

Per reader and pooled: accuracy with exact (Clopper–Pearson) CIs and an exact binomial test
against 50 %; sensitivity (synthetic called synthetic) and specificity (real called real);
ROC AUC from the confidence ratings (answer × confidence as a 10-point score); agreement
between readers (Fleiss' kappa over the items every reader answered); accuracy by method,
class and skin-type group with Benjamini–Hochberg over the breakdown; the synthetic images
that fooled most readers. Attention checks are scored apart and never count as items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from statsmodels.stats.multitest import multipletests

from dermsynth import io
from dermsynth.readers import database as db


def load_answers(study: str | Path) -> pd.DataFrame:
    conn = db.connect(Path(study) / db.DB_NAME)
    try:
        frame = pd.DataFrame(db.answers_with_key(conn))
    finally:
        conn.close()
    if frame.empty:
        return frame
    return frame.assign(correct=frame["answer"] == frame["truth"])


def exact(k: int, n: int) -> dict:
    """Accuracy k/n with its exact 95 % CI and the two-sided exact binomial test against 50 %."""
    if n == 0:
        return {"n": 0, "accuracy": None, "ci_low": None, "ci_high": None, "p_value": None}
    test = binomtest(int(k), int(n), 0.5)
    ci = test.proportion_ci(0.95, method="exact")
    return {"n": int(n), "accuracy": k / n, "ci_low": float(ci.low), "ci_high": float(ci.high),
            "p_value": float(test.pvalue)}


def single_task_stats(rows: pd.DataFrame) -> dict:
    """Accuracy, sensitivity, specificity and confidence-rating AUC of real-vs-synthetic answers."""
    out = exact(int(rows["correct"].sum()), len(rows))
    synth, real = rows[rows["truth"] == "synthetic"], rows[rows["truth"] == "real"]
    out["sensitivity"] = float((synth["answer"] == "synthetic").mean()) if len(synth) else None
    out["specificity"] = float((real["answer"] == "real").mean()) if len(real) else None
    score = np.where(rows["answer"] == "synthetic", 1, -1) * rows["confidence"].astype(float)
    truth = (rows["truth"] == "synthetic").astype(int)
    out["auc_confidence"] = float(roc_auc_score(truth, score)) if truth.nunique() == 2 else None
    return out


def agreement(single: pd.DataFrame) -> dict:
    """Fleiss' kappa over the single-image items every reader answered (needs ≥ 2 readers)."""
    readers = single["reader"].nunique()
    if readers < 2:
        return {"fleiss_kappa": None, "readers": int(readers), "items": 0}
    wide = single.pivot_table(index="item_id", columns="reader", values="answer", aggfunc="first").dropna()
    if wide.empty:
        return {"fleiss_kappa": None, "readers": int(readers), "items": 0}
    table, _ = aggregate_raters((wide == "synthetic").astype(int).to_numpy())
    kappa = float(fleiss_kappa(table)) if table.shape[1] > 1 else 1.0
    return {"fleiss_kappa": kappa, "readers": int(readers), "items": int(len(wide))}


def breakdown(single: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per method, class and skin-type group, exact tests vs 50 %, BH over all rows."""
    rows = []
    for factor in ("method", "label", "skin_group"):
        for level, g in single.groupby(single[factor].fillna("unknown")):
            rows.append({"factor": factor, "level": level, **exact(int(g["correct"].sum()), len(g))})
    out = pd.DataFrame(rows)
    if len(out):
        out["p_bh"] = multipletests(out["p_value"], method="fdr_bh")[1]
    return out


def fooled(single: pd.DataFrame, top: int = 12) -> pd.DataFrame:
    """Synthetic items ranked by the share of readers who called them real."""
    synth = single[single["truth"] == "synthetic"]
    if synth.empty:
        return pd.DataFrame(columns=["item_id", "image_a", "label", "method", "readers", "fooled_share"])
    g = synth.groupby(["item_id", "image_a", "label", "method"], dropna=False)
    out = g.agg(readers=("answer", "size"), fooled_share=("answer", lambda a: float((a == "real").mean())))
    return out.reset_index().sort_values(["fooled_share", "readers"], ascending=False).head(top)


def analyse(study: str | Path) -> dict:
    """Everything above; writes ``STUDY/analysis/*.csv`` and ``summary.json`` and returns the summary."""
    study = Path(study)
    answers = load_answers(study)
    if answers.empty:
        return {"answers": 0}
    single = answers[answers["task"] == "single"]
    pairs = answers[answers["task"] == "pair"]
    attention = answers[answers["task"] == "attention"]
    per_reader = []
    for reader, rows in answers.groupby("reader"):
        s, p, a = (rows[rows["task"] == t] for t in ("single", "pair", "attention"))
        per_reader.append({"reader": reader, **(single_task_stats(s) if len(s) else {"n": 0}),
                           "pair_accuracy": float(p["correct"].mean()) if len(p) else None,
                           "attention_passed": int(a["correct"].sum()), "attention_items": int(len(a))})
    per_reader = pd.DataFrame(per_reader)
    out = study / "analysis"
    parts = breakdown(single) if len(single) else pd.DataFrame()
    top = fooled(single)
    for name, frame in (("per_reader", per_reader), ("breakdown", parts), ("fooled", top)):
        io.write_text(out / f"{name}.csv", frame.to_csv(index=False))
    summary = {"answers": int(len(answers)), "readers": int(answers["reader"].nunique()),
               "pooled": single_task_stats(single) if len(single) else None,
               "pairs": exact(int(pairs["correct"].sum()), len(pairs)) if len(pairs) else None,
               "attention": exact(int(attention["correct"].sum()), len(attention)) if len(attention) else None,
               "agreement": agreement(single) if len(single) else None}
    io.write_json(out / "summary.json", summary)
    return {**summary, "per_reader": per_reader, "breakdown": parts, "fooled": top}
