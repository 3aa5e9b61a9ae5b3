"""Linear-probe triage: a whole grid's first look in about a minute.

Features are computed once per image (real pool, validation, test and every synthetic image
the grid uses) with the experiment's backbone and reduced to 64 whitened PCA dimensions fitted
on training images; then every cell is a logistic regression on its own training rows (real
subset + its k synthetic per real), L2 strength chosen on validation. Each cell gets a record
in the usual schema, so ``dermsynth report`` analyses the triage folder like any experiment.
Transforms do not apply to fixed features: cells that differ only in ``transforms`` give the
same answer (the report shows that as no effect).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from dermsynth import io
from dermsynth.data.cache import cache_images
from dermsynth.data.splits import load_splits
from dermsynth.data.synthetic_store import read_manifest
from dermsynth.experiments.runner import planned_runs, prepare_stages
from dermsynth.experiments.spec import ExperimentSpec
from dermsynth.models.backbones import create_backbone
from dermsynth.train.metrics import summarize
from dermsynth.train.probe import features
from dermsynth.train.run import device_for, environment, images_tensor, training_table
from dermsynth.train.spec import RunSpec

C_GRID = (0.1, 1.0)
PCA_DIMS = 64


def _feature_bank(runs: list[RunSpec], split, tables: dict, device) -> tuple[dict[str, int], np.ndarray]:
    """Features of every image the runs of one split use, reduced by PCA fitted on training images."""
    spec = runs[0]
    tables = [tables[r.run_id()] for r in runs] + [split.val, split.test]
    images = pd.concat(tables).drop_duplicates("id")[["id", "path"]].reset_index(drop=True)
    cached = cache_images(images, spec.image_size, Path(spec.cache_dir) / "images", progress=False)
    model = create_backbone(spec.backbone, 2, spec.pretrained, spec.pretrained_path, spec.image_size).to(device)
    torch.manual_seed(0)
    feats = features(model, images_tensor(cached, images["id"]), spec.model_copy(update={"precision": "fp32"}),
                     device)
    pool = np.isin(images["id"], split.pool["id"]) | ~np.isin(images["id"], split.table["id"])
    # PCA fitted on the training images (real pool and synthetic, never val/test), whitened: the
    # probes then solve in PCA_DIMS dimensions, which is what makes hundreds of cells cheap
    pca = PCA(n_components=min(PCA_DIMS, *feats.shape), whiten=True, random_state=0).fit(feats[pool])
    return {i: k for k, i in enumerate(images["id"])}, pca.transform(feats)


def _probe(run: RunSpec, split, train: pd.DataFrame, index: dict, bank: np.ndarray, classes: list[str]) -> dict:
    t0 = time.perf_counter()
    cls = {c: i for i, c in enumerate(classes)}

    def xy(t):
        return bank[[index[i] for i in t["id"]]], t["label"].map(cls).to_numpy()

    (tx, ty), (vx, vy), (sx, _) = xy(train), xy(split.val), xy(split.test)
    fits = [LogisticRegression(C=c, max_iter=300, tol=1e-3, random_state=run.seed).fit(tx, ty) for c in C_GRID]
    val = [float(f.score(vx, vy)) for f in fits]
    best = fits[int(np.argmax(val))]
    probs = np.zeros((len(sx), len(classes)))
    probs[:, best.classes_] = best.predict_proba(sx)
    test = split.test[["id", "label", "skin_group"]].reset_index(drop=True)
    pred = test.assign(predicted=[classes[i] for i in probs.argmax(1)])
    secs = time.perf_counter() - t0
    return {"run_id": run.run_id(), "spec": run.model_dump(), "classes": classes, "n_train": int(len(train)),
            "n_train_real": int((~train["synthetic"]).sum()), "n_train_synthetic": int(train["synthetic"].sum()),
            "metrics": summarize(pred, probs, classes),
            "fit": {"history": [{"C": c, "val_accuracy": a} for c, a in zip(C_GRID, val, strict=True)],
                    "epochs_run": 1, "best_epoch": 1, "steps": 0, "train_seconds": secs,
                    "images_per_second": len(train) / max(secs, 1e-9), "train_images_per_second": 0.0,
                    "batch_size": 0},
            "wall_seconds": secs,
            "predictions": {"id": pred["id"].tolist(), "label": pred["label"].tolist(),
                            "predicted": pred["predicted"].tolist(),
                            "skin_group": [None if pd.isna(g) else str(g) for g in pred["skin_group"]],
                            "probabilities": np.round(probs, 5).tolist()},
            "environment": environment(torch.device("cpu")), "precision": {"used": "fp32", "reason": "features"},
            "backbone_weights": "features for a linear probe"}


def triage(spec: ExperimentSpec, experiment_out: str | Path, out: str | Path, progress: bool = False) -> dict:
    """Probe every cell of ``spec`` (its stores made or reused under ``experiment_out``) into ``out``."""
    experiment_out, out = Path(experiment_out), Path(out)
    t0 = time.perf_counter()
    prepare_stages(spec, experiment_out, progress=progress)
    runs = [r.model_copy(update={"mode": "linear-probe"}) for r in planned_runs(spec, experiment_out)]
    splits = load_splits(r.split_spec() for r in runs)
    device = device_for(runs[0])
    t_features = 0.0
    done = 0
    for split_spec, split in splits.items():
        mine = [r for r in runs if r.split_spec() == split_spec]
        t1 = time.perf_counter()
        manifests = {s: read_manifest(s) for s in {r.synthetic_store for r in mine if r.synthetic_per_real}}
        tables = {r.run_id(): training_table(r, split, manifests.get(r.synthetic_store)) for r in mine}
        index, bank = _feature_bank(mine, split, tables, device)
        t_features += time.perf_counter() - t1
        classes = sorted(split.table["label"].unique())
        for run in mine:
            record = _probe(run, split, tables[run.run_id()], index, bank, classes)
            io.write_json(out / "runs" / f"{run.run_id()}.json", record, indent=None)
            done += 1
    io.write_json(out / "experiment.json", {"name": f"{spec.name}-triage", "digest": spec.digest(),
                                            "spec": spec.model_dump()})
    return {"cells": done, "feature_seconds": t_features, "seconds": time.perf_counter() - t0}
