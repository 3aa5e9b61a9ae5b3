"""External validation: a study's runs applied to another data set (another clinic's folder,
DDI, a held-out atlas of Fitzpatrick 17k).

Labels are matched by name (case, spaces, ``_`` and ``-`` ignored) or through a mapping file;
a class the models do not know is an error naming it, or — when asked — left out and
reported. No external image may be one the run learnt from or selected its model on: images
are compared by content with the run's training pool and validation set. Each run gets an
external record in the internal records' schema (``OUT/external/<name>/runs/<run_id>.json``),
so the same statistics (CIs, comparisons with BH, bootstrap) apply to both.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dermsynth import files
from dermsynth.data.cache import cache_images, file_digest
from dermsynth.data.registry import load_dataset
from dermsynth.data.splits import load_splits, read_id_list
from dermsynth.errors import ConfigError, DataError
from dermsynth.experiments.results import load_records, runs_dir
from dermsynth.progress import progress_bars
from dermsynth.train.checkpoint import load_bundle
from dermsynth.train.metrics import summarize
from dermsynth.train.predict import predict_arrays
from dermsynth.train.run import prediction_lists
from dermsynth.train.spec import RunSpec

log = logging.getLogger(__name__)


def external_folders_of(out_dir: str | Path) -> list[Path]:
    """The external evaluations of an experiment: ``OUT/external/<name>`` folders with records."""
    base = Path(out_dir) / "external"
    return sorted(p for p in base.iterdir() if (p / "runs").is_dir()) if base.is_dir() else []


def select_records(source: str | Path, where: dict[str, str] | None = None) -> tuple[list[dict], Path]:
    """The runs to evaluate and the experiment folder they belong to: one record file, or every
    finished run of an experiment folder whose spec matches ``where`` (a grid cell: all its seeds)."""
    source = Path(source)
    if source.is_file():
        return [json.loads(source.read_text())], source.parent.parent
    if not runs_dir(source).is_dir():
        raise DataError(f"{source} is neither a run record (.json) nor an experiment folder with runs/")
    records = load_records(source)
    for key, value in (where or {}).items():
        if records and key not in records[0]["spec"]:
            raise ConfigError(f"--where {key}=…: runs have no setting {key!r}")
        records = [r for r in records if str(r["spec"].get(key)) == str(value)]
    if not records:
        raise DataError(f"no finished run in {source} matches {where or 'anything'}")
    return records, source


def _norm(label: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(label)).strip().lower()


def read_label_map(path: str | Path) -> dict[str, str | None]:
    """A CSV of two columns (external label, model class); an empty class leaves that label out."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if frame.shape[1] != 2:
        raise ConfigError(f"label map {path} needs exactly two columns (external label, model class); "
                          f"it has {list(frame.columns)}")
    return {a: (b or None) for a, b in zip(frame.iloc[:, 0], frame.iloc[:, 1], strict=True)}


def match_labels(table: pd.DataFrame, classes: list[str], label_map: dict[str, str | None] | None = None,
                 exclude_unknown: bool = False) -> tuple[pd.DataFrame, dict[str, int]]:
    """``table`` with labels renamed to the models' classes; returns it and {label: n} left out."""
    by_name = {_norm(c): c for c in classes}
    label_map = label_map or {}
    bad = [v for v in label_map.values() if v is not None and v not in classes]
    if bad:
        raise ConfigError(f"label map names class(es) {sorted(set(bad))} the models do not know; "
                          f"their classes: {classes}")
    mapped = [label_map[x] if x in label_map else by_name.get(_norm(x)) for x in table["label"]]
    table = table.assign(label=mapped, external_label=table["label"])
    unknown = table[table["label"].isna()]
    excluded = {str(k): int(v) for k, v in unknown["external_label"].value_counts().items()}
    if excluded and not exclude_unknown:
        raise DataError(f"external label(s) {sorted(excluded)} match no class of the models ({classes}); map them "
                        "with --label-map FILE (external,model columns) or leave them out with --exclude-unknown")
    return table.dropna(subset=["label"]).reset_index(drop=True), excluded


def refuse_seen_images(external: pd.DataFrame, records: list[dict]) -> int:
    """No external image may be a training-pool or validation image of a run (by content).
    Returns how many external images are the runs' internal test images (allowed, counted)."""
    digests = pd.Series([file_digest(p) for p in external["path"]], index=external["id"])
    seen_test = 0
    for split in load_splits(RunSpec(**r["spec"]).split_spec() for r in records).values():
        used = pd.concat([split.pool, split.val])
        used_digests = {file_digest(p): i for i, p in zip(used["id"], used["path"], strict=True)}
        clash = [(e, used_digests[d]) for e, d in digests.items() if d in used_digests]
        if clash:
            ex = ", ".join(f"{e} = {i}" for e, i in clash[:5])
            raise DataError(f"{len(clash)} external image(s) are training or validation images of the runs ({ex}…): "
                            "external validation needs images the models never saw; drop them (an --ids file, or "
                            "exclude_file when training)")
        test_digests = {file_digest(p) for p in split.test["path"]}
        seen_test = max(seen_test, int(digests.isin(test_digests).sum()))
    return seen_test


def evaluate_runs(source: str | Path, dataset: str, root: str | Path | None, *, where: dict | None = None,
                  label_map: str | Path | None = None, exclude_unknown: bool = False,
                  ids_file: str | Path | None = None, name: str | None = None, classes: str | None = None,
                  csv: str | Path | None = None, cache_dir: str | Path | None = None, device: str = "auto") -> dict:
    """Evaluate the selected runs on ``dataset`` at ``root``; writes and returns the summary."""
    records, exp = select_records(source, where)
    class_lists = {tuple(r["classes"]) for r in records}
    if len(class_lists) > 1:
        raise ConfigError(f"the selected runs have different class lists ({len(class_lists)}); evaluate them apart")
    model_classes = list(next(iter(class_lists)))
    table = load_dataset(dataset, root, classes=classes, csv=csv)
    if ids_file:
        keep = read_id_list(ids_file)
        table = table[table["id"].astype(str).isin(keep)].reset_index(drop=True)
    table, excluded = match_labels(table, model_classes, read_label_map(label_map) if label_map else None,
                                   exclude_unknown)
    if table.empty:
        raise DataError(f"no external image of {dataset} ({root}) is left to evaluate")
    seen_test = refuse_seen_images(table, records)
    # the folder's own name even for `--root .`; a CSV names the evaluation when there is no root
    name = name or (Path(root).resolve().name if root else Path(csv).stem if csv else dataset)
    out = Path(exp) / "external" / name
    cache = Path(cache_dir or RunSpec(**records[0]["spec"]).cache_dir) / "images"
    rows = []
    for size in sorted({r["spec"]["image_size"] for r in records}):
        with progress_bars(False):
            cached = cache_images(table, size, cache, skip_bad=True)
        if cached.skipped:
            log.warning("%d external image(s) could not be read and are left out: %s", len(cached.skipped),
                        "; ".join(f"{i} ({why})" for i, why in cached.skipped[:5]))
        arrays = cached.array
        rows_of = table.set_index("id").loc[cached.ids].reset_index()
        for rec in (r for r in records if r["spec"]["image_size"] == size):
            rows.append(_evaluate_one(rec, exp, rows_of, arrays, out, device, {
                "dataset": dataset, "root": str(root), "n": int(len(rows_of)), "excluded_labels": excluded,
                "unreadable": len(cached.skipped), "internal_test_images": seen_test,
                "label_map": str(label_map) if label_map else None}))
    summary = {"name": name, "dataset": dataset, "root": str(root), "runs": rows, "excluded_labels": excluded,
               "n_images": int(len(table)), "folder": str(out)}
    files.write_json(out / "summary.json", summary)
    return summary


def _evaluate_one(rec: dict, exp: Path, rows: pd.DataFrame, arrays: np.ndarray, out: Path, device: str,
                  about: dict) -> dict:
    t0 = time.perf_counter()
    model, meta = load_bundle(runs_dir(exp), rec["run_id"])
    probs = predict_arrays(model, meta, arrays, device)
    pred = rows[["id", "label", "skin_group"]].assign(predicted=[meta["classes"][i] for i in probs.argmax(1)])
    metrics = summarize(pred, probs, meta["classes"])
    ext = {**{k: rec[k] for k in ("run_id", "spec", "classes", "n_train", "n_train_real", "n_train_synthetic",
                                  "fit")},
           "metrics": metrics, "wall_seconds": time.perf_counter() - t0, "external": about,
           "internal_metrics": {k: rec["metrics"].get(k) for k in ("accuracy", "balanced_accuracy", "n_test")},
           "predictions": prediction_lists(pred, probs)}
    files.write_json(runs_dir(out) / f"{rec['run_id']}.json", ext, indent=None)
    return {"run_id": rec["run_id"], "internal_accuracy": rec["metrics"]["accuracy"],
            "external_accuracy": metrics["accuracy"], "external_n": metrics["n_test"]}
