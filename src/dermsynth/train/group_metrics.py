"""Metrics beyond accuracy, overall and per skin-type group — the figures the dermatology-AI
literature reports: balanced accuracy, macro F1, ROC AUC, calibration, and for each metric the
gap between the best and the worst group, plus equalized-odds differences (fairlearn).

Groups with fewer than ``MIN_GROUP_N`` test images are listed with their n but left out of
the gaps, which a handful of images would otherwise decide.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, equalized_odds_difference
from sklearn.metrics import balanced_accuracy_score, f1_score

from dermsynth.train.scores import auroc

MIN_GROUP_N = 5
ECE_BINS = 15


def calibration(y: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Expected calibration error of the top-class confidence (equal-width bins) and the
    reliability diagram's bins (confidence vs accuracy, with counts)."""
    conf, correct = probs.max(1), probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        sel = idx == b
        if not sel.any():
            continue
        acc, c = float(correct[sel].mean()), float(conf[sel].mean())
        ece += sel.mean() * abs(acc - c)
        table.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(sel.sum()), "confidence": c,
                      "accuracy": acc})
    return {"ece": float(ece), "bins": table}


def operating_point(y: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict:
    """Binary task (positive = the second class, e.g. malignant): sensitivity and specificity
    of ``p(positive) ≥ threshold``."""
    pos = probs[:, 1] >= threshold
    tp, fn = int((pos & (y == 1)).sum()), int((~pos & (y == 1)).sum())
    tn, fp = int((~pos & (y == 0)).sum()), int((pos & (y == 0)).sum())
    return {"threshold": threshold, "sensitivity": tp / (tp + fn) if tp + fn else None,
            "specificity": tn / (tn + fp) if tn + fp else None, "tp": tp, "fn": fn, "tn": tn, "fp": fp}


def macro_f1(y: np.ndarray, yhat: np.ndarray, k: int) -> float:
    """Macro F1 over all ``k`` classes (a class never predicted nor present scores 0)."""
    return float(f1_score(y, yhat, labels=list(range(k)), average="macro", zero_division=0))


def equalized_odds(y: np.ndarray, yhat: np.ndarray, groups: np.ndarray, classes: list[str]) -> dict:
    """fairlearn's equalized-odds difference (the larger of the TPR and FPR gaps between groups);
    for more than two classes one-vs-rest per class, summarised by the worst and the mean class."""
    if len(classes) == 2:
        return {"equalized_odds_difference": float(equalized_odds_difference(y, yhat, sensitive_features=groups))}
    per_class = {}
    for c, name in enumerate(classes):
        yc, pc = (y == c).astype(int), (yhat == c).astype(int)
        if yc.min() == yc.max():
            continue
        per_class[name] = float(equalized_odds_difference(yc, pc, sensitive_features=groups))
    vals = list(per_class.values())
    return {"equalized_odds_difference": max(vals) if vals else None,
            "equalized_odds_difference_mean": float(np.mean(vals)) if vals else None,
            "equalized_odds_by_class": per_class}


def _balanced_accuracy(y: np.ndarray, yhat: np.ndarray) -> float:
    """Balanced accuracy over the classes a group has. A skin-type group lacks some classes by
    design, so sklearn's "y_pred contains classes not in y_true" would be printed for most runs
    of a study while saying nothing: it is silenced here, and only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y, yhat))


def per_group(y: np.ndarray, probs: np.ndarray, groups: pd.Series, classes: list[str]) -> dict:
    """Each headline metric per skin-type group, the best−worst gap per metric, equalized odds."""
    g = groups.astype(object).where(groups.notna(), None).to_numpy()
    keep = np.array([v is not None for v in g])
    if not keep.any():
        return {}
    y, probs, g = y[keep], probs[keep], np.array([str(v) for v in g[keep]])
    yhat, k = probs.argmax(1), len(classes)
    frame = MetricFrame(metrics={"accuracy": lambda a, b: float((a == b).mean()),
                                 "balanced_accuracy": _balanced_accuracy,
                                 "macro_f1": lambda a, b: macro_f1(a, b, k)},
                        y_true=y, y_pred=yhat, sensitive_features=g)
    table = {str(name): {**{m: float(v) for m, v in row.items()}, "n": int((g == name).sum())}
             for name, row in frame.by_group.iterrows()}
    for name in table:
        sel = g == name
        table[name]["auroc"] = auroc(y[sel], probs[sel])
        table[name]["ece"] = calibration(y[sel], probs[sel])["ece"]
    big = [name for name in table if table[name]["n"] >= MIN_GROUP_N]
    gaps = {}
    for metric in ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "ece"):
        vals = {name: table[name][metric] for name in big if table[name][metric] is not None}
        if len(vals) >= 2:
            best = min(vals, key=vals.get) if metric == "ece" else max(vals, key=vals.get)
            worst = max(vals, key=vals.get) if metric == "ece" else min(vals, key=vals.get)
            gaps[metric] = {"gap": abs(vals[best] - vals[worst]), "best": best, "worst": worst}
    sel = np.isin(g, big)
    fair = equalized_odds(y[sel], yhat[sel], g[sel], classes) if len(set(g[sel])) >= 2 else {}
    return {"groups": table, "gaps": gaps, **fair, "min_group_n": MIN_GROUP_N}
