"""Linear-probe triage: a whole grid's first look in about a minute.

Features are computed once per image (real pool, validation, test and every synthetic image
the grid uses) with the experiment's backbone and reduced to 64 whitened PCA dimensions fitted
on training images; then every cell is a logistic regression on its own training rows (real
subset + its k synthetic per real), L2 strength chosen on validation. Each cell gets a record
in the usual schema, so ``dermsynth experiment report`` analyses the triage folder like any experiment.
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

from dermsynth import files
from dermsynth.data.cache import cache_images
from dermsynth.data.splits import load_splits
from dermsynth.data.synthetic_store import read_manifest
from dermsynth.experiments.runner import planned_runs, prepare_stages
from dermsynth.experiments.spec import ExperimentSpec
from dermsynth.models.backbones import create_backbone
from dermsynth.progress import progress_bars
from dermsynth.train.pilot import pilot_for
from dermsynth.train.probe import features, fit_head
from dermsynth.train.run import device_for, images_tensor, make_record, training_table
from dermsynth.train.spec import RunSpec

C_GRID = (0.1, 1.0)
PCA_DIMS = 64


def _feature_bank(runs: list[RunSpec], split, tables: dict, device) -> tuple[dict[str, int], np.ndarray]:
    """Features of every image the runs of one split use, reduced by PCA fitted on training images."""
    spec = runs[0]
    tables = [tables[r.run_id()] for r in runs] + [split.val, split.test]
    images = pd.concat(tables).drop_duplicates("id")[["id", "path"]].reset_index(drop=True)
    with progress_bars(False):  # one step of a probe: no bar of its own
        cached = cache_images(images, spec.image_size, Path(spec.cache_dir) / "images")
    model = create_backbone(spec.backbone, 2, spec.pretrained, spec.pretrained_path, spec.image_size).to(device)
    torch.manual_seed(0)
    feats = features(model, images_tensor(cached, images["id"]), spec.model_copy(update={"precision": "fp32"}),
                     device)
    pool = np.isin(images["id"], split.pool["id"]) | ~np.isin(images["id"], split.table["id"])
    # PCA fitted on the training images (real pool and synthetic, never val/test), whitened: the
    # probes then solve in PCA_DIMS dimensions, which is what makes hundreds of cells cheap
    pca = PCA(n_components=min(PCA_DIMS, *feats.shape), whiten=True, random_state=0).fit(feats[pool])
    return {i: k for k, i in enumerate(images["id"])}, pca.transform(feats)


def _probe(run: RunSpec, split, train: pd.DataFrame, index: dict, bank: np.ndarray, classes: list[str],
           pilot: dict | None = None) -> dict:
    t0 = time.perf_counter()
    cls = {c: i for i, c in enumerate(classes)}

    def xy(t):
        return bank[[index[i] for i in t["id"]]], t["label"].map(cls).to_numpy()

    (tx, ty), (vx, vy), (sx, _) = xy(train), xy(split.val), xy(split.test)
    probs, history = fit_head(tx, ty, vx, vy, sx, len(classes), run.seed, C_GRID, max_iter=300, tol=1e-3)
    secs = time.perf_counter() - t0
    fit = {"history": history, "epochs_run": 1, "best_epoch": 1, "steps": 0, "train_seconds": secs,
           "images_per_second": len(train) / max(secs, 1e-9), "train_images_per_second": 0.0, "batch_size": 0}
    return make_record(run, classes, train, split.test, probs, fit, secs, torch.device("cpu"),
                       {"used": "fp32", "reason": "features"}, "features for a linear probe", pilot)


def triage(spec: ExperimentSpec, experiment_out: str | Path, out: str | Path) -> dict:
    """Probe every cell of ``spec`` (its stores made or reused under ``experiment_out``) into ``out``."""
    experiment_out, out = Path(experiment_out), Path(out)
    t0 = time.perf_counter()
    prepare_stages(spec, experiment_out)
    runs = [r.model_copy(update={"mode": "linear-probe"}) for r in planned_runs(spec, experiment_out)]
    splits = load_splits(r.split_spec() for r in runs)
    device = device_for(runs[0])
    t_features = 0.0
    done = 0
    for split_spec, split in splits.items():
        mine = [r for r in runs if r.split_spec() == split_spec]
        t1 = time.perf_counter()
        manifests = {s: read_manifest(s) for s in {r.synthetic_store for r in mine if r.synthetic_per_real}}
        pilots = {r.run_id(): pilot_for(r, split) for r in mine}
        tables = {r.run_id(): training_table(r, split, manifests.get(r.synthetic_store),
                                             (pilots[r.run_id()] or {}).get("errors")) for r in mine}
        index, bank = _feature_bank(mine, split, tables, device)
        t_features += time.perf_counter() - t1
        classes = sorted(split.table["label"].unique())
        for run in mine:
            record = _probe(run, split, tables[run.run_id()], index, bank, classes, pilots[run.run_id()])
            files.write_json(out / "runs" / f"{run.run_id()}.json", record, indent=None)
            done += 1
    # "triage": its records are linear probes of the planned cells, re-written on every call,
    # not the cells themselves (experiments/current_runs.py does not check them against the plan)
    files.write_json(out / "experiment.json", {"name": f"{spec.name}-triage", "digest": spec.digest(),
                                            "spec": spec.model_dump(), "triage": True})
    return {"cells": done, "feature_seconds": t_features, "seconds": time.perf_counter() - t0}
