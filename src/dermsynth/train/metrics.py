"""Metrics of a run from its per-image predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, confusion_matrix


def summarize(pred: pd.DataFrame, probs: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy, top-3, per-class and per-skin-group accuracy, confusion."""
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
    }
    if "skin_group" in pred.columns and pred["skin_group"].notna().any():
        groups = pred["skin_group"].astype(object)
        out["per_skin_group_accuracy"] = {
            str(g): float(correct[(groups == g).to_numpy()].mean()) for g in sorted(groups.dropna().unique())}
        out["per_skin_group_n"] = {str(g): int((groups == g).sum()) for g in sorted(groups.dropna().unique())}
    return out
