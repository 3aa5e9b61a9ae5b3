"""Scores of predicted probabilities that both a run's summary (metrics.py) and its per-group
metrics (group_metrics.py) use: one home below both, so neither imports the other."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(y: np.ndarray, probs: np.ndarray) -> float | None:
    """Binary AUROC (positive = class 1) or macro one-vs-rest AUROC; None when a class is absent."""
    present = np.unique(y)
    if len(present) < 2 or len(present) < probs.shape[1]:
        return None
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    return float(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
