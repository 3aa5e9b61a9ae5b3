"""Linear probe: features extracted once, a logistic-regression head — fast grid triage."""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from dermsynth.train.checkpoint import set_linear_head
from dermsynth.train.loop import FitResult, normalizer, to_input
from dermsynth.train.spec import RunSpec


@torch.no_grad()
def features(model, x: torch.Tensor, spec: RunSpec, device, batch: int = 256) -> np.ndarray:
    model.eval()
    norm = normalizer(model, device)
    out = []
    for i in range(0, len(x), batch):
        xb = to_input(x[i:i + batch].to(device), norm, spec.channels_last, None, None)
        out.append(model.forward_head(model.forward_features(xb), pre_logits=True).float().cpu())
    return torch.cat(out).numpy()


def fit_head(ftr: np.ndarray, ty: np.ndarray, fva: np.ndarray, vy: np.ndarray, fte: np.ndarray, n_classes: int,
             seed: int, c_grid=(0.01, 0.1, 1.0, 10.0), **lr_options) -> tuple[np.ndarray, list[dict]]:
    """Logistic regression on features, L2 strength chosen on validation accuracy; returns the
    test probabilities (n_test, n_classes) and the validation history."""
    probs, history, _ = fit_head_model(ftr, ty, fva, vy, fte, n_classes, seed, c_grid, **lr_options)
    return probs, history


def fit_head_model(ftr: np.ndarray, ty: np.ndarray, fva: np.ndarray, vy: np.ndarray, fte: np.ndarray,
                   n_classes: int, seed: int, c_grid=(0.01, 0.1, 1.0, 10.0), **lr_options):
    """:func:`fit_head`, also returning the chosen scikit-learn classifier."""
    best, best_acc, history = None, -1.0, []
    for c in c_grid:
        clf = LogisticRegression(C=c, random_state=seed, **({"max_iter": 2000} | lr_options)).fit(ftr, ty)
        acc = float(clf.score(fva, vy))
        history.append({"C": c, "val_accuracy": acc})
        if acc > best_acc:
            best, best_acc = clf, acc
    probs = np.zeros((len(fte), n_classes))
    probs[:, best.classes_] = best.predict_proba(fte)
    return probs, history, best


def head_as_linear(clf, mu: np.ndarray, sd: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The logistic regression on standardised features as one linear layer on raw features,
    so softmax(W f + b) equals ``clf.predict_proba((f - mu) / sd)`` and the run can be exported
    like any other. Binary: sigmoid(z) = softmax([0, z]); a class absent from training gets
    probability 0, as in :func:`fit_head`."""
    coef, icpt = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2:
        coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt])
    weight = np.zeros((n_classes, coef.shape[1]))
    bias = np.full(n_classes, -1e4)
    weight[clf.classes_] = coef / sd
    bias[clf.classes_] = icpt - (coef / sd) @ mu
    return weight, bias


def linear_probe(model, tx, ty, vx, vy, sx, spec: RunSpec, device, n_classes: int):
    """Features of the run's backbone, standardised on the training set, and a fitted head."""
    t0 = time.perf_counter()
    ftr, fva, fte = (features(model, x, spec, device) for x in (tx, vx, sx))
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    ftr, fva, fte = ((f - mu) / sd for f in (ftr, fva, fte))
    probs, history, clf = fit_head_model(ftr, ty.numpy(), fva, vy.numpy(), fte, n_classes, spec.seed)
    set_linear_head(model, *head_as_linear(clf, mu, sd, n_classes))  # so the run's model is the probe
    secs = time.perf_counter() - t0
    return probs, FitResult(history=history, epochs_run=1, best_epoch=1, train_seconds=secs,
                            images_per_second=len(tx) / max(secs, 1e-9), batch_size=256)
