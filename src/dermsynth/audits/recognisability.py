"""Do synthetic images carry their class? A classifier trained on real images only scores them.

Why: synthetic images can only add class signal to a classifier if they show their
condition. The check the field uses is to train a classifier on the real training pool and
measure its accuracy on each generation method's images, next to its accuracy on real test
images and chance. A one-sided exact binomial test says whether a method is above chance.
Inpainted and outpainted images keep part of a pool image the classifier was trained on, so
their accuracy is an upper bound; text-to-image images have no such link.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest

from dermsynth import files
from dermsynth.data.cache import cache_images
from dermsynth.data.splits import Split
from dermsynth.data.synthetic_store import read_manifest
from dermsynth.errors import DataError
from dermsynth.models.backbones import create_backbone
from dermsynth.progress import progress_bars
from dermsynth.stats import wilson_interval
from dermsynth.train.loop import fit, predict
from dermsynth.train.run import device_for, images_tensor, resolve_precision
from dermsynth.train.spec import RunSpec


def _xy(table: pd.DataFrame, classes: list[str], spec: RunSpec) -> tuple[torch.Tensor, torch.Tensor]:
    with progress_bars(False):  # a step inside the check: no bar of its own
        cached = cache_images(table, spec.image_size, Path(spec.cache_dir) / "images")
    y = torch.tensor([classes.index(c) for c in table["label"]], dtype=torch.long)
    return images_tensor(cached, table["id"]), y


def majority_rate(labels) -> float:
    """Chance for a classifier that always answers the most frequent class of these images."""
    counts = pd.Series(list(labels)).value_counts()
    return float(counts.iloc[0] / counts.sum()) if len(counts) else float("nan")


def _row(group: str, correct: np.ndarray, chance: float) -> dict:
    n, k = len(correct), int(correct.sum())
    acc = k / n if n else float("nan")
    lo, hi = wilson_interval(k, n)
    p = binomtest(k, n, chance, alternative="greater").pvalue if n else float("nan")
    return {"group": group, "n": n, "accuracy": acc, "ci_low": lo, "ci_high": hi, "chance": chance,
            "p_above_chance": p}


@dataclass
class RealOnlyClassifier:
    """A classifier trained on the real training pool only, and its accuracy on real test images."""

    model: torch.nn.Module
    spec: RunSpec
    device: torch.device
    classes: list[str]
    real_row: dict


def real_only_classifier(split: Split, spec: RunSpec, pool: pd.DataFrame | None = None,
                         score_test: bool = True) -> RealOnlyClassifier:
    """``spec``'s backbone and training settings, trained on the whole real training pool (or the
    ``pool`` rows given) with early stopping on the validation split, scored on the real test
    images — unless ``score_test`` is false: then no test image is even read (a filter's
    classifier)."""
    classes = sorted(split.table["label"].unique())
    torch.manual_seed(spec.seed)
    (tx, ty), (vx, vy) = (_xy(t, classes, spec) for t in (split.pool if pool is None else pool, split.val))
    model = create_backbone(spec.backbone, len(classes), spec.pretrained, spec.pretrained_path, spec.image_size)
    device = device_for(spec)
    model.to(device)
    spec = resolve_precision(spec, model, len(classes), device)[0]
    fit(model, tx, ty, vx, vy, spec, device)
    if not score_test:
        return RealOnlyClassifier(model, spec, device, classes, {})
    sx, sy = _xy(split.test, classes, spec)
    # Chance is the majority-class rate of the images scored: on an imbalanced set (DDI: 92 %
    # benign) a classifier that always says "benign" beats 1/K without recognising anything.
    real_pred = predict(model, sx, spec, device).argmax(1)
    row = _row("real test", real_pred == sy.numpy(), majority_rate(split.test["label"]))
    row["predicted_one_class_share"] = float(np.bincount(real_pred).max() / max(len(real_pred), 1))
    return RealOnlyClassifier(model, spec, device, classes, row)



def scorable_manifest(split: Split, store: str | Path) -> pd.DataFrame:
    """The store's manifest, refused when it is empty or names classes the data set lacks."""
    syn = read_manifest(store)
    if syn.empty:
        raise DataError(f"the synthetic store {store} holds no images; generate some first")
    classes = sorted(split.table["label"].unique())
    unknown = sorted(set(syn["label"]) - set(classes))
    if unknown:
        raise DataError(f"store {store} has classes {unknown} that the data set does not have ({classes})")
    return syn


def recognisability(split: Split, store: str | Path, spec: RunSpec, out: str | Path | None = None,
                    classifier: RealOnlyClassifier | None = None) -> pd.DataFrame:
    """Accuracy of a real-only classifier on real test images and on each method's synthetic images.

    Returns one row per group (``real test`` and each method) and, with ``out``, writes
    ``recognisability.csv`` (also per class) and ``recognisability.json`` there. ``classifier``:
    one trained before (several stores scored by one classifier).
    """
    syn = scorable_manifest(split, store)
    classes = sorted(split.table["label"].unique())
    syn = syn.assign(id=syn["synth_id"])
    clf = classifier or real_only_classifier(split, spec)
    model, spec, device = clf.model, clf.spec, clf.device
    rows, per_class = [dict(clf.real_row)], []
    for method, part in syn.groupby("method", sort=True):
        part = part.reset_index(drop=True)
        px, py = _xy(part, classes, spec)
        pred = predict(model, px, spec, device).argmax(1)
        correct = pred == py.numpy()
        rows.append({**_row(str(method), correct, majority_rate(part["label"])),
                     "predicted_one_class_share": float(np.bincount(pred).max() / max(len(pred), 1))})
        for c in classes:
            sel = (part["label"] == c).to_numpy()
            if sel.any():
                # within one class every answer but c is wrong: chance is 1/K for a guesser
                per_class.append({**_row(str(method), correct[sel], 1 / len(classes)), "class": c})
    table = pd.DataFrame(rows)
    table.attrs["per_class"] = pd.DataFrame(per_class)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        pd.concat([table.assign(**{"class": "all"}), pd.DataFrame(per_class)]).to_csv(
            out / "recognisability.csv", index=False)
        files.write_json(out / "recognisability.json", {
            "backbone": spec.backbone, "image_size": spec.image_size, "n_train_real": int(len(split.pool)),
            "n_synthetic": int(len(syn)), "rows": table.to_dict(orient="records")})
    return table
