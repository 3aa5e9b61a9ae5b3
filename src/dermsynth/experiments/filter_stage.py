"""The filter stage: score each synthetic store once, write one id-only view per filter setting.

A task per store (after that store's generation), so the classifier that scores it is trained
once however many settings the grid sweeps; scores and views are cached by the digests of the
store, the split and the classifier's settings, so a re-run (or a run resumed after a crash)
reuses them. Before any cell trains, every cell with a filter is checked against its view:
a class and method that keep fewer images than the cell needs stop the experiment here.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from dermsynth import files
from dermsynth.audits.synthetic_filter import (
    SCORES_FILE,
    filter_pool,
    score_store,
    write_view,
)
from dermsynth.data.splits import load_split, load_splits
from dermsynth.data.synthetic_store import is_store, read_manifest, store_digest
from dermsynth.experiments.graph import Task
from dermsynth.experiments.task_payloads import StoreRunsPayload
from dermsynth.train.spec import RunSpec, real_only_fields
from dermsynth.train.synthetic_views import check_enough, read_view, view_path, views_dir
from dermsynth.train.training_set import real_subset

log = logging.getLogger(__name__)


def filtered_runs(runs: list[RunSpec]) -> list[RunSpec]:
    return [r for r in runs if r.synthetic_per_real > 0 and r.synthetic_filter != "none"]


def classifier_spec(run: RunSpec) -> RunSpec:
    """The filter's classifier: the cell's backbone and training settings, on the real images the
    generator learnt from, with the paper's transforms (not the cell's augmentation arm)."""
    return run.model_copy(update={
        **real_only_fields(), "synthetic_classes": None, "use_all_pool": True, "seed": 0, "class_n_real": {},
        "duplicate_classes": {}, "repeat_real": 1, "augment": None, "transforms": True,
        "synthetic_fingerprint": None, "data_digest": None, "filter_digest": None})


def filter_tasks(runs: list[RunSpec], stores: dict[str, list[str]]) -> list[Task]:
    """One filter task per store that a filtered cell draws from, after that store's generation."""
    mine: dict[str, list[RunSpec]] = {}
    for r in filtered_runs(runs):
        mine.setdefault(str(r.synthetic_store), []).append(r)
    return [Task(f"filter/{i}", "filter", task_filter, StoreRunsPayload(store=store, runs=rs),
                 after=list(stores.get(store, [])), gpus=1)
            for i, (store, rs) in enumerate(sorted(mine.items()))]


def task_filter(payload: StoreRunsPayload) -> list[str]:
    return [str(p) for p in filter_stage(payload.runs, payload.store)]


def filter_stage(runs: list[RunSpec], store: str | Path) -> list[Path]:
    """Score ``store`` (cached), write the view of every (filter, keep) the runs use (cached) and
    check each run against its view. Returns the views' paths."""
    runs = filtered_runs(runs)
    if not runs or not is_store(store):
        return []
    clf_spec = classifier_spec(runs[0])
    split = load_split(clf_spec.split_spec())
    learnt = filter_pool(split, store)
    ids = hashlib.sha256("\n".join(sorted(learnt["id"].astype(str))).encode()).hexdigest()[:16]
    key = f"{store_digest(store)}:{split.digest()}:{clf_spec.run_id()}:{ids}"
    meta, scores_path = views_dir(store) / "scores.json", views_dir(store) / SCORES_FILE
    if meta.exists() and scores_path.exists() and files.read_json(meta).get("cache_key") == key:
        import pandas as pd

        scores = pd.read_parquet(scores_path)
    else:
        log.info("filter: scoring %s with a classifier trained on %d real training images", store, len(learnt))
        scores = score_store(split, store, clf_spec)
        files.write_parquet(scores_path, scores)
        files.write_json(meta, {"cache_key": key, "n_real": int(len(learnt)), "backbone": clf_spec.backbone,
                             "image_size": clf_spec.image_size, "n_synthetic": int(len(scores))})
    paths = []
    for name, keep in sorted({(r.synthetic_filter, r.filter_keep) for r in runs}):
        path = view_path(store, name, keep)
        if not (path.exists() and files.read_json(path).get("cache_key") == key):
            write_view(store, name, keep, scores, key)
        paths.append(path)
    manifest = read_manifest(store)
    splits = load_splits(r.split_spec() for r in runs)
    for r in runs:
        view = read_view(store, r.synthetic_filter, r.filter_keep)
        real = real_subset(r, splits[r.split_spec()])
        if r.synthetic_classes is not None:
            real = real[real["label"].isin(r.synthetic_classes)]
        check_enough(manifest[manifest["synth_id"].astype(str).isin(view.ids)], manifest, r, real)
    return paths
