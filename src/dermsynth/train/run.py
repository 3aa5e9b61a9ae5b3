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
from dermsynth.data.cache import cache_images
from dermsynth.data.splits import Split, load_split
from dermsynth.data.synthetic_store import is_store, read_manifest, store_digest
from dermsynth.errors import ConfigError, DataError
from dermsynth.models.backbones import create_backbone, set_trainable
from dermsynth.train.checkpoint import save_bundle
from dermsynth.train.image_source import InMemoryImages, image_source
from dermsynth.train.loop import fit, predict
from dermsynth.train.metrics import summarize
from dermsynth.train.mixing import add_synthetic, duplicate_classes
from dermsynth.train.spec import ALLOCATION_CAP, RunSpec
from dermsynth.train.transforms import augmentation_record


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


def training_table(spec: RunSpec, split: Split, manifest: pd.DataFrame | None = None) -> pd.DataFrame:
    """Real subset (with per-class overrides), synthetic images, duplication.

    ``manifest``: the store's manifest when the caller has read it already (many cells, one store).
    """
    real = real_subset(spec, split)
    if spec.synthetic_per_real > 0:
        if not spec.synthetic_store:
            raise ConfigError("synthetic_per_real > 0 needs synthetic_store (a folder written by "
                              "`dermsynth generator sample`)")
        manifest = read_manifest(spec.synthetic_store) if manifest is None else manifest
        targets = real if spec.synthetic_classes is None else real[real["label"].isin(spec.synthetic_classes)]
        if spec.synthetic_filter != "none":
            from dermsynth.train.synthetic_views import filtered_manifest

            manifest = filtered_manifest(manifest, spec, targets)
        mixed = add_synthetic(targets, manifest, spec.synthetic_per_real, spec.seed, spec.synthetic_methods,
                              spec.synthetic_allocation, ALLOCATION_CAP)
        rest = real[~real["id"].isin(targets["id"])].assign(synthetic=False, ref_id=lambda d: d["id"])
        train = pd.concat([mixed, rest], ignore_index=True)
    else:
        train = real.assign(synthetic=False, ref_id=real["id"])
    if spec.duplicate_classes:
        train = duplicate_classes(train, spec.duplicate_classes)
    if spec.repeat_real > 1:
        train = duplicate_classes(train, dict.fromkeys(sorted(set(train["label"])), spec.repeat_real))
    return train


def real_subset(spec: RunSpec, split: Split) -> pd.DataFrame:
    """The real training images of a run: whole pool, n_real per class, or per-class overrides."""
    if spec.use_all_pool:
        return split.pool.reset_index(drop=True)
    if spec.class_n_real:
        return _per_class_subset(spec, split)
    return split.train_subset(spec.n_real, spec.seed)


def _per_class_subset(spec: RunSpec, split: Split) -> pd.DataFrame:
    unknown = set(spec.class_n_real) - set(split.pool["label"])
    if unknown:
        raise ConfigError(f"class_n_real names unknown class(es) {sorted(unknown)}")
    parts = []
    for n in sorted({spec.n_real, *spec.class_n_real.values()}):
        sub = split.train_subset(n, spec.seed)
        labels = [c for c in sub["label"].unique() if spec.class_n_real.get(c, spec.n_real) == n]
        parts.append(sub[sub["label"].isin(labels)])
    return pd.concat(parts, ignore_index=True)


def device_for(spec: RunSpec) -> torch.device:
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec.device)


def images_tensor(cache, ids) -> torch.Tensor:
    """The cached images of ``ids`` as a uint8 (N, 3, H, W) tensor, in the order of ``ids``."""
    return InMemoryImages(cache, ids).x


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
    train = training_table(spec, split)
    val, test = split.val, split.test
    classes = sorted(split.table["label"].unique())
    missing = [c for c in classes if c not in set(train["label"])]
    if missing:
        raise DataError(f"class(es) {missing} have no image in the training set; every class needs ≥ 1")
    cache_dir = Path(spec.cache_dir) / "images"
    cached = cache_images(pd.concat([train, val, test]).drop_duplicates("id"), spec.image_size, cache_dir)
    cls_idx = {c: i for i, c in enumerate(classes)}
    ty, vy = (torch.tensor(t["label"].map(cls_idx).to_numpy(), dtype=torch.long) for t in (train, val))
    tx = image_source(cached, train["id"], spec.stream)  # streamed batch by batch when large
    vx, sx = images_tensor(cached, val["id"]), images_tensor(cached, test["id"])
    model = create_backbone(spec.backbone, len(classes), spec.pretrained, spec.pretrained_path, spec.image_size)
    model.to(device)
    if spec.mode == "linear-probe":
        from dermsynth.train.probe import linear_probe

        used, why = "fp32", "linear probe: features in fp32"
        probs, fitres = linear_probe(model, tx, ty, vx, vy, sx, spec, device, len(classes))
    else:
        set_trainable(model, spec.mode)
        effective, used, why = resolve_precision(spec, model, len(classes), device, len(tx))
        fitres = fit(model, tx, ty, vx, vy, effective, device)
        probs = predict(model, sx, effective, device)
    # the exact weights: a bare timm name resolves to whatever tag that timm version defaults to
    weights = (f"{model.pretrained_cfg.get('architecture', spec.backbone)}."
               f"{model.pretrained_cfg.get('tag') or 'untagged'}" if spec.pretrained else "random init")
    record = make_record(spec, classes, train, test, probs, asdict(fitres), time.perf_counter() - t_start,
                         device, {"used": used, "reason": why}, weights)
    record["missing_images"] = split.missing_per_class  # per class, listed but not on disk (the report says it)
    if out_dir is not None:
        if spec.save_checkpoint:  # before the record: a record's "checkpoint" names weights on disk
            record["checkpoint"] = save_bundle(model, spec, classes, out_dir, spec.checkpoint_max_mb, used)
        write_record(record, Path(out_dir) / f"{record['run_id']}.json")
    return record


def synthetic_counts(spec: RunSpec, train: pd.DataFrame) -> dict:
    """The allocation a run used and the synthetic images each class and skin-type group got."""
    syn = train[train["synthetic"]]
    groups = syn["skin_group"].astype(object).where(syn["skin_group"].notna(), "unknown").astype(str)
    return {"allocation": spec.synthetic_allocation,
            "by_class": {str(k): int(v) for k, v in syn["label"].value_counts().sort_index().items()},
            "by_skin_group": {str(k): int(v) for k, v in groups.value_counts().sort_index().items()}}


def make_record(spec: RunSpec, classes: list[str], train: pd.DataFrame, test: pd.DataFrame, probs: np.ndarray,
                fit: dict, wall_seconds: float, device, precision: dict, weights: str) -> dict:
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
        "synthetic_allocation": synthetic_counts(spec, train),
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


def resolve_precision(spec: RunSpec, model, num_classes: int, device, n_train: int | None = None
                      ) -> tuple[RunSpec, str, str]:
    """The spec with ``precision = "auto"`` resolved for this machine (models/precision_rule.py:
    the CPU's native bf16, never a timing), the choice and why. ``model``, ``num_classes`` and
    ``n_train`` are kept for callers; the rule does not depend on them."""
    if spec.precision != "auto":
        return spec, spec.precision, "set in the spec"
    from dermsynth.train.precision import choose_precision

    used, why = choose_precision(device)
    return spec.model_copy(update={"precision": used}), used, why


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
