"""Metrics of a run from its per-image predictions (the summary every record holds; the
per-group and calibration parts come from group_metrics, the AUROC from scores)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, confusion_matrix

from dermsynth.train.group_metrics import calibration, macro_f1, operating_point, per_group
from dermsynth.train.scores import auroc

# A run that predicts one class for at least this share of the test images has collapsed to
# a constant classifier: its accuracy is the class's share, not something it learnt.
DEGENERATE_SHARE = 0.95


def degeneracy(y: np.ndarray, yhat: np.ndarray, classes: list[str]) -> dict:
    """The most-predicted class and its share; ``degenerate`` when it dominates the predictions."""
    counts = np.bincount(yhat, minlength=len(classes))
    top = int(counts.argmax())
    share = float(counts[top] / max(len(yhat), 1))
    majority = float(np.bincount(y, minlength=len(classes)).max() / max(len(y), 1))
    return {"degenerate": share >= DEGENERATE_SHARE, "top_predicted_class": classes[top],
            "top_predicted_share": share, "majority_class_rate": majority}


def summarize(pred: pd.DataFrame, probs: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro F1, top-3, AUROC, calibration, per-class and
    per-skin-group metrics (with gaps and equalized odds), confusion."""
    y = pred["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    yhat = probs.argmax(1)
    correct = y == yhat
    k = min(3, probs.shape[1])
    topk = (np.argsort(-probs, axis=1)[:, :k] == y[:, None]).any(1)
    out = {
        "n_test": int(len(y)),
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y, yhat)),
        "top3_accuracy": float(topk.mean()),
        "per_class_accuracy": {c: float(correct[y == i].mean()) for i, c in enumerate(classes) if (y == i).any()},
        "per_class_n": {c: int((y == i).sum()) for i, c in enumerate(classes)},
        "confusion_matrix": confusion_matrix(y, yhat, labels=list(range(len(classes)))).tolist(),
        "auroc": auroc(y, probs),
        **degeneracy(y, yhat, classes),
    }
    out["macro_f1"] = macro_f1(y, yhat, len(classes))
    out["calibration"] = calibration(y, probs)
    if probs.shape[1] == 2:
        point = operating_point(y, probs)
        out["sensitivity"], out["specificity"] = point["sensitivity"], point["specificity"]
    if "skin_group" in pred.columns and pred["skin_group"].notna().any():
        out["fairness"] = per_group(y, probs, pred["skin_group"], classes)
        groups = pred["skin_group"].astype(object)
        out["per_skin_group_accuracy"] = {
            str(g): float(correct[(groups == g).to_numpy()].mean()) for g in sorted(groups.dropna().unique())}
        out["per_skin_group_n"] = {str(g): int((groups == g).sum()) for g in sorted(groups.dropna().unique())}
    return out
