"""Prediction with a saved run model on any images: a folder, a CSV of paths, or a data set.

Test-time settings are the evaluation's own (the same decode/resize as the image cache, the
same normalisation, channels-last and autocast as the run's test predictions), so a
prediction here equals the run's own on the same image. An unreadable file is reported with
its reason and the others are predicted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermsynth.data.folder import IMAGE_SUFFIXES
from dermsynth.data.images import load_array
from dermsynth.errors import ConfigError, DataError, ImageDecodeError
from dermsynth.train.loop import predict
from dermsynth.train.spec import RunSpec


def images_to_predict(source: str | Path) -> pd.DataFrame:
    """A table with ``id`` and ``path`` from a folder (recursively) or a CSV with a ``path``
    column (relative paths are taken from the CSV's folder; other columns are kept)."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {source}")
        return pd.DataFrame({"id": [str(p.relative_to(source)) for p in files], "path": [str(p) for p in files]})
    if source.suffix.lower() == ".csv" and source.is_file():
        table = pd.read_csv(source)
        if "path" not in table.columns:
            raise DataError(f"{source} has no 'path' column (columns: {list(table.columns)}); "
                            "give one image path per row")
        table["path"] = [str(p if Path(p).is_absolute() else source.parent / p) for p in table["path"]]
        if "id" not in table.columns:
            table["id"] = table["path"]
        return table
    raise DataError(f"{source} is neither a folder of images nor a .csv file with a 'path' column")


def decode_all(table: pd.DataFrame, size: int) -> tuple[np.ndarray, list[int], list[dict]]:
    """Decode every image at ``size`` px; returns the arrays, the rows they came from, and the
    failures (id, path, reason) of files that could not be read."""
    arrays, kept, failures = [], [], []
    for i, (img_id, path) in enumerate(zip(table["id"], table["path"], strict=True)):
        try:  # a missing, corrupt or odd file raises ImageDecodeError with its reason
            arrays.append(load_array(path, size))
            kept.append(i)
        except ImageDecodeError as exc:
            failures.append({"id": str(img_id), "path": str(path), "reason": exc.reason})
    stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    return stacked, kept, failures


def predict_arrays(model, meta: dict, arrays: np.ndarray, device: str = "auto") -> np.ndarray:
    """Class probabilities (N, classes) for uint8 (N, H, W, 3) arrays, as the run evaluated."""
    pre = meta["preprocessing"]
    if arrays.shape[1:3] != (pre["image_size"], pre["image_size"]):
        raise ConfigError(f"images are {arrays.shape[1:3]}, the model expects {pre['image_size']} px")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    spec = RunSpec(backbone=meta["backbone"], image_size=pre["image_size"], channels_last=pre["channels_last"],
                   precision=pre["precision"] if pre["precision"] in ("fp32", "bf16") else "fp32")
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    return predict(model.to(dev), x, spec, dev)


def predict_table(model, meta: dict, table: pd.DataFrame, device: str = "auto") -> tuple[pd.DataFrame, list[dict]]:
    """Probabilities per class for every readable image of ``table`` (columns ``p:<class>``),
    the predicted class, and the failures."""
    arrays, kept, failures = decode_all(table, meta["preprocessing"]["image_size"])
    probs = predict_arrays(model, meta, arrays, device) if len(kept) else np.zeros((0, len(meta["classes"])))
    out = table.iloc[kept].reset_index(drop=True)[[c for c in table.columns if c in ("id", "path", "label")]]
    out = out.assign(predicted=[meta["classes"][i] for i in probs.argmax(1)] if len(kept) else [])
    for j, c in enumerate(meta["classes"]):
        out[f"p:{c}"] = probs[:, j] if len(kept) else []
    return out, failures
