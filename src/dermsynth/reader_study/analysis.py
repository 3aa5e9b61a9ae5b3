"""Analysis of a reader study: can clinicians tell synthetic from real?

Readers and items are both samples, so pooled results come from :mod:`dermsynth.reader_study.mrmc`
(reader and item effects; jackknife pseudovalues for the AUC, DBM-style), never from counting
readers × items as independent trials. Reported:

* per reader — accuracy with an exact (Clopper–Pearson) CI and binomial test (one reader: the
  items are the sample), sensitivity (synthetic called synthetic), specificity (real called
  real), d′ and criterion c, and the ROC AUC of the confidence ratings;
* pooled — the same, with CIs and tests that count readers and items;
* per generation method — signal detection, not "accuracy": the method's synthetic items
  against the real items (which are no method), so a reader who answers "real" every time has
  d′ = 0 and a large criterion, not "0 % correct"; AUC tests against 0.5 with
  Benjamini–Hochberg over the methods;
* per class and skin-type group — accuracy (real and synthetic items are matched within
  each), BH within each factor;
* agreement — Fleiss' kappa over the items every reader answered (undefined, and said so,
  when every answer is the same);
* the synthetic images that fooled most readers. Attention checks are scored apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from dermsynth import files
from dermsynth.reader_study import database as db
from dermsynth.reader_study.export import frame_csv
from dermsynth.reader_study.mrmc import auc, crossed_mean_test, dprime, pseudovalues
from dermsynth.stats import bh_adjust


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


def _score(rows: pd.DataFrame) -> np.ndarray:
    """Answer × confidence as a 10-point "how synthetic" score."""
    return np.where(rows["answer"] == "synthetic", 1, -1) * rows["confidence"].astype(float).to_numpy()


def _none(v):
    return None if v is None or not np.isfinite(v) else float(v)


def single_task_stats(rows: pd.DataFrame) -> dict:
    """One reader's (or a pool's, descriptively) accuracy with its exact test, sensitivity,
    specificity, d′, criterion and confidence-rating AUC."""
    out = exact(int(rows["correct"].sum()), len(rows))
    synth = (rows["truth"] == "synthetic").to_numpy()
    said = (rows["answer"] == "synthetic").to_numpy()
    out["sensitivity"] = float(said[synth].mean()) if synth.any() else None
    out["specificity"] = float((~said[~synth]).mean()) if (~synth).any() else None
    d, c = dprime(said[synth], said[~synth]) if synth.any() and (~synth).any() else (None, None)
    out["d_prime"], out["criterion"] = d, c
    out["auc_confidence"] = _none(auc(synth, _score(rows)))
    return out


def _matrix(rows: pd.DataFrame) -> np.ndarray:
    """Correctness as a readers × items matrix (NaN: not answered)."""
    return rows.pivot_table(index="reader", columns="item_id", values="correct", aggfunc="first").astype(float)\
        .to_numpy()


def _crossed(rows: pd.DataFrame, prefix: str = "") -> dict:
    res = crossed_mean_test(_matrix(rows), 0.5)
    return {f"{prefix}accuracy": res["mean"], f"{prefix}ci_low": res["ci_low"], f"{prefix}ci_high": res["ci_high"],
            f"{prefix}p_value": _none(res["p_value"]), "readers": res["readers"], "items": res["items"], "n": res["n"]}


def _auc_test(rows: pd.DataFrame) -> dict:
    """Mean per-reader AUC of the confidence ratings, with a CI and test against 0.5 from its
    jackknife pseudovalues (reader and item effects)."""
    synth = (rows["truth"] == "synthetic").to_numpy()
    score = _score(rows)
    y, mean = pseudovalues(rows["reader"].to_numpy(), rows["item_id"].to_numpy(),
                           lambda idx: auc(synth[idx], score[idx]))
    if not np.isfinite(y).any():
        return {"auc": None, "auc_ci_low": None, "auc_ci_high": None, "auc_p_value": None}
    res = crossed_mean_test(y, 0.5)
    return {"auc": _none(mean), "auc_ci_low": _none(res["ci_low"]), "auc_ci_high": _none(res["ci_high"]),
            "auc_p_value": _none(res["p_value"])}


def _detection(rows: pd.DataFrame) -> dict:
    """Sensitivity, specificity, d′ and c averaged over readers (each reader's own), and the AUC test."""
    per = [single_task_stats(r) for _, r in rows.groupby("reader")]
    mean = {k: _none(np.nanmean([p[k] if p[k] is not None else np.nan for p in per]))
            for k in ("sensitivity", "specificity", "d_prime", "criterion")}
    return {**mean, **_auc_test(rows)}


def pooled(single: pd.DataFrame) -> dict:
    """Accuracy against 50 % and the confidence AUC against 0.5, readers and items both random."""
    return {**_crossed(single), **_detection(single)}


def by_method(single: pd.DataFrame) -> pd.DataFrame:
    """Signal detection per generation method: its synthetic items against all real items; BH over methods."""
    real = single[single["truth"] == "real"]
    rows = []
    for method, synth in single[single["truth"] == "synthetic"].groupby("method"):
        both = pd.concat([synth, real])
        rows.append({"method": method, "readers": int(both["reader"].nunique()),
                     "synthetic_items": int(synth["item_id"].nunique()), "real_items": int(real["item_id"].nunique()),
                     **_detection(both)})
    out = pd.DataFrame(rows)
    if len(out):
        out["auc_p_bh"] = bh_adjust(out["auc_p_value"])
    return out


def breakdown(single: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per class and skin-type group (real and synthetic items of each), tested against
    50 % with reader and item effects; BH within each factor."""
    parts = []
    for factor in ("label", "skin_group"):
        rows = [{"factor": factor, "level": level, **_crossed(g)}
                for level, g in single.groupby(single[factor].fillna("unknown"))]
        frame = pd.DataFrame(rows)
        if len(frame):
            frame["p_bh"] = bh_adjust(frame["p_value"])
        parts.append(frame)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def agreement(single: pd.DataFrame) -> dict:
    """Fleiss' kappa over the single-image items every reader answered (needs ≥ 2 readers);
    undefined (None, with a note) when every answer is the same."""
    readers = single["reader"].nunique()
    if readers < 2:
        return {"fleiss_kappa": None, "readers": int(readers), "items": 0, "note": "needs 2 readers or more"}
    wide = single.pivot_table(index="item_id", columns="reader", values="answer", aggfunc="first").dropna()
    if wide.empty:
        return {"fleiss_kappa": None, "readers": int(readers), "items": 0, "note": "no item answered by every reader"}
    table, _ = aggregate_raters((wide == "synthetic").astype(int).to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = float(fleiss_kappa(table)) if table.shape[1] > 1 else float("nan")
    if not np.isfinite(kappa):
        return {"fleiss_kappa": None, "readers": int(readers), "items": int(len(wide)),
                "note": "undefined: every answer was the same"}
    return {"fleiss_kappa": kappa, "readers": int(readers), "items": int(len(wide))}


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
    methods = by_method(single) if len(single) else pd.DataFrame()
    top = fooled(single)
    for name, frame in (("per_reader", per_reader), ("by_method", methods), ("breakdown", parts), ("fooled", top)):
        files.write_text(out / f"{name}.csv", frame_csv(frame))
    summary = {"answers": int(len(answers)), "readers": int(answers["reader"].nunique()),
               "pooled": pooled(single) if len(single) else None,
               "pairs": _crossed(pairs) if len(pairs) else None,
               "attention": exact(int(attention["correct"].sum()), len(attention)) if len(attention) else None,
               "agreement": agreement(single) if len(single) else None}
    files.write_json(out / "summary.json", summary)
    return {**summary, "per_reader": per_reader, "by_method": methods, "breakdown": parts, "fooled": top}
