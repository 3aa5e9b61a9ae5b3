"""One classifier run from a RunSpec: data → split → training set → fit → test record."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermsynth import files
from dermsynth.data.splits import Split, load_split
from dermsynth.data.synthetic_store import is_store, store_digest
from dermsynth.errors import DataError
from dermsynth.train.checkpoint import save_bundle
from dermsynth.train.fitting import device_for, fit_and_predict, images_tensor, resolve_precision
from dermsynth.train.metrics import summarize
from dermsynth.train.pilot import pilot_for
from dermsynth.train.spec import RunSpec
from dermsynth.train.training_set import real_subset, training_table
from dermsynth.train.transforms import augmentation_record

# What callers import from here: a run and its pieces (fitting, the training set) from their own modules.
__all__ = ["device_for", "environment", "fit_and_predict", "images_tensor", "make_record", "pin_inputs",
           "prediction_lists", "real_subset", "resolve_precision", "run_training", "synthetic_counts",
           "training_table", "write_record"]


def pin_inputs(spec: RunSpec, split: Split, digests: dict | None = None) -> RunSpec:
    """Fill in the split's digest and the store's digest this run depends on, or refuse when
    they were pinned before and the data or store has changed since.

    ``digests`` caches split and store digests across the runs of one grid (a store digest reads
    the whole manifest; a split digest hashes the whole table).
    """
    digests = {} if digests is None else digests

    def cached(key, compute):
        if key not in digests:
            digests[key] = compute()
        return digests[key]

    # the content digest reads every image of the split: taken once when a grid is planned, not
    # again in each run (a run planned moments ago trusts its pinned value)
    content = spec.content_digest or cached(("content", id(split)), split.content_digest)
    pinned = {"data_digest": cached(("split", id(split)), split.digest), "synthetic_fingerprint": None,
              "filter_digest": None, "content_digest": content}
    if spec.synthetic_per_real > 0 and is_store(spec.synthetic_store):
        pinned["synthetic_fingerprint"] = cached(spec.synthetic_store, lambda: store_digest(spec.synthetic_store))
        if spec.synthetic_filter != "none":  # the filtered view, once the filter stage made it
            from dermsynth.train.synthetic_views import view_digest

            pinned["filter_digest"] = view_digest(spec.synthetic_store, spec.synthetic_filter, spec.filter_keep)
    for field, value in pinned.items():
        old = getattr(spec, field)
        if old is not None and old != value:
            raise DataError(f"{field} of this run was {old} when it was planned but is {value} now: the data set or "
                            "the synthetic store changed; re-plan the experiment (run it again) instead of mixing")
    return spec.model_copy(update=pinned)


def run_training(spec: RunSpec, out_dir: str | Path | None = None) -> dict:
    """Train and evaluate one run; returns (and with ``out_dir`` writes) its JSON record.

    Runs with ``spec.threads`` torch threads (all cores when unset) and gives the process its
    thread count back afterwards: a run with ``threads = 1`` would otherwise leave every later
    computation in the process single-threaded, which changes what later code computes (its
    numerics, not only its speed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(spec.threads or os.cpu_count() or 1)
    try:
        return _train_and_record(spec, out_dir)
    finally:
        torch.set_num_threads(before)


def _train_and_record(spec: RunSpec, out_dir: str | Path | None) -> dict:
    t_start = time.perf_counter()
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed % 2**32)
    device = device_for(spec)
    split = load_split(spec.split_spec())
    spec = pin_inputs(spec, split)
    pilot = pilot_for(spec, split)  # computed once: the record carries the errors this allocation used
    train = training_table(spec, split, errors=pilot and pilot["errors"])
    test = split.test
    classes = sorted(split.table["label"].unique())
    model, probs, fitres, used, why = fit_and_predict(spec, split, train, test, classes, device)
    # the exact weights: a bare timm name resolves to whatever tag that timm version defaults to
    weights = (f"{model.pretrained_cfg.get('architecture', spec.backbone)}."
               f"{model.pretrained_cfg.get('tag') or 'untagged'}" if spec.pretrained else "random init")
    record = make_record(spec, classes, train, test, probs, asdict(fitres), time.perf_counter() - t_start,
                         device, {"used": used, "reason": why}, weights, pilot)
    record["missing_images"] = split.missing_per_class  # per class, listed but not on disk (the report says it)
    if out_dir is not None:
        if spec.save_checkpoint:  # before the record: a record's "checkpoint" names weights on disk
            record["checkpoint"] = save_bundle(model, spec, classes, out_dir, spec.checkpoint_max_mb, used)
        write_record(record, Path(out_dir) / f"{record['run_id']}.json")
    return record


def synthetic_counts(spec: RunSpec, train: pd.DataFrame, pilot: dict | None = None) -> dict:
    """The allocation a run used and the synthetic images each class and skin-type group got (and,
    for a ``by_error`` allocation, the pilot's run id and validation errors it followed)."""
    syn = train[train["synthetic"]]
    groups = syn["skin_group"].astype(object).where(syn["skin_group"].notna(), "unknown").astype(str)
    out = {"allocation": spec.synthetic_allocation,
           "by_class": {str(k): int(v) for k, v in syn["label"].value_counts().sort_index().items()},
           "by_skin_group": {str(k): int(v) for k, v in groups.value_counts().sort_index().items()}}
    if pilot is not None:
        out["pilot"] = pilot
    return out


def make_record(spec: RunSpec, classes: list[str], train: pd.DataFrame, test: pd.DataFrame, probs: np.ndarray,
                fit: dict, wall_seconds: float, device, precision: dict, weights: str,
                pilot: dict | None = None) -> dict:
    """A run's JSON record: spec, counts, metrics, per-image test predictions and provenance.
    Every producer of results (training, triage) writes this one schema."""
    pred = test[["id", "label", "skin_group"]].reset_index(drop=True)
    pred = pred.assign(predicted=[classes[i] for i in probs.argmax(1)])
    return {
        "run_id": spec.run_id(), "spec": spec.model_dump(), "classes": classes, "n_train": int(len(train)),
        "n_train_real": int((~train["synthetic"]).sum()), "n_train_synthetic": int(train["synthetic"].sum()),
        "synthetic_by_method": ({str(k): int(v) for k, v in
                                 train.loc[train["synthetic"], "method"].value_counts().items()}
                                if "method" in train else {}),
        "synthetic_allocation": synthetic_counts(spec, train, pilot),
        "metrics": summarize(pred, probs, classes), "fit": fit, "wall_seconds": wall_seconds,
        "predictions": prediction_lists(pred, probs),
        "environment": environment(device), "precision": precision, "backbone_weights": weights,
        "augmentation": augmentation_record(spec.augmentation()),
    }


def prediction_lists(pred: pd.DataFrame, probs: np.ndarray) -> dict:
    """A record's per-image predictions (id, label, predicted, skin_group, probabilities)."""
    return {"id": pred["id"].astype(str).tolist(), "label": pred["label"].tolist(),
            "predicted": pred["predicted"].tolist(),
            "skin_group": [None if pd.isna(g) else str(g) for g in pred["skin_group"]],
            "probabilities": np.round(probs, 5).tolist()}


def environment(device) -> dict:
    """Versions and hardware a result depends on (a timm or diffusers upgrade can change weights;
    the statistics libraries' versions are recorded because a pandas major version can change a report)."""
    import diffusers
    import scipy
    import sklearn
    import statsmodels
    import timm

    from dermsynth import __version__
    from dermsynth.lockfile import lock_info

    return {"dermsynth": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "diffusers": diffusers.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "scipy": scipy.__version__, "statsmodels": statsmodels.__version__, "scikit-learn": sklearn.__version__,
            "python": platform.python_version(),
            "device": str(device), "threads": torch.get_num_threads(), "lock": lock_info()}


def write_record(record: dict, path: Path) -> Path:
    """Atomic write: a reader sees the old file or the whole new one, never a partial one."""
    return files.write_json(path, record, indent=None)
