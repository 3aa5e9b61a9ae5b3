"""Filtering a synthetic store: which of its images a run may draw from.

Why: a filtered synthetic set may help where the whole set does not (ALIA keeps only the
images a real-data classifier finds confidently of their class). Three scores per synthetic
image, all from models that learnt from the real images the store's generator learnt from
(training pool only — no validation or test image is scored, and no test image is read):

- ``confidence``: a real-only classifier's probability of the image's intended class (ALIA);
- ``similarity``: cosine similarity, in that classifier's feature space, to the centroid of
  the class's real training images;
- ``novelty``: distance to the nearest real training image, in the classifier's feature
  space and in pixel space (the memorization audit's spaces), each divided by the audit's
  copy threshold (the 1 % quantile of real-to-real nearest distances) and the smaller kept:
  below 1 the memorization audit would flag the image as a copy.

Images are ranked among the images of their own reference and method, and the top
``keep`` fraction (rounded up) is kept: the paper's protocol adds k synthetic images per real
image, so every reference keeps the same share. A view is ids only (``STORE/views/…``); no
image is copied.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermsynth import files
from dermsynth.audits.memorization import calibrate, nearest
from dermsynth.audits.recognisability import RealOnlyClassifier, real_only_classifier, scorable_manifest
from dermsynth.data.cache import cache_images, embed_table
from dermsynth.data.splits import Split
from dermsynth.data.synthetic_store import read_training_ids, store_digest
from dermsynth.errors import ConfigError
from dermsynth.models.encoders import pixel_encoder
from dermsynth.progress import progress_bars
from dermsynth.train.loop import normalizer, predict, to_input
from dermsynth.train.run import images_tensor
from dermsynth.train.spec import RunSpec
from dermsynth.train.synthetic_views import view_path

FILTERS = ("confidence", "similarity", "novelty")
SCORES_FILE = "scores.parquet"


def check_filter(name: str) -> None:
    if name != "none" and name not in FILTERS:
        raise ConfigError(f"synthetic_filter={name!r}; choose one of none, {', '.join(FILTERS)}")


def filter_pool(split: Split, store: str | Path) -> pd.DataFrame:
    """The real images the filter learns from: the generator's (training pool only), else the pool."""
    learnt = read_training_ids(store)
    pool = split.pool
    mine = pool[pool["id"].astype(str).isin(learnt)] if learnt else pool
    return (mine if len(mine) else pool).reset_index(drop=True)


@torch.no_grad()
def features(model: torch.nn.Module, x: torch.Tensor, spec: RunSpec, device, batch: int = 256) -> np.ndarray:
    """L2-normalised penultimate features (timm's pre-logits) of uint8 images (N, 3, H, W)."""
    model.eval()
    norm = normalizer(model, device)
    out = []
    for i in range(0, len(x), batch):
        xb = to_input(x[i:i + batch].to(device), norm, spec.channels_last, None, None)
        f = model.forward_head(model.forward_features(xb), pre_logits=True).float().flatten(1).cpu().numpy()
        out.append(f)
    emb = np.concatenate(out) if out else np.zeros((0, 1), np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def _nearest_chunked(query: np.ndarray, base: np.ndarray, chunk: int = 4096) -> np.ndarray:
    return np.concatenate([nearest(query[i:i + chunk], base)[1] for i in range(0, len(query), chunk)]
                          or [np.zeros(0)])


def score_store(split: Split, store: str | Path, spec: RunSpec,
                classifier: RealOnlyClassifier | None = None) -> pd.DataFrame:
    """Every synthetic image of ``store`` with its three scores (higher = kept first)."""
    man = scorable_manifest(split, store)
    classes = sorted(split.table["label"].unique())
    real = filter_pool(split, store)
    clf = classifier or real_only_classifier(split, spec, pool=real, score_test=False)
    syn = man.assign(id=man["synth_id"]).reset_index(drop=True)
    cache = Path(spec.cache_dir) / "images"
    with progress_bars(False):  # steps inside the scoring: no bars of their own
        sx = images_tensor(cache_images(syn, spec.image_size, cache), syn["id"])
        rx = images_tensor(cache_images(real, spec.image_size, cache), real["id"])
    probs = predict(clf.model, sx, clf.spec, clf.device)
    target = np.array([clf.classes.index(c) for c in syn["label"]])
    sf, rf = (features(clf.model, x, clf.spec, clf.device) for x in (sx, rx))
    centroids = {c: rf[(real["label"] == c).to_numpy()].mean(0) for c in classes if (real["label"] == c).any()}
    centroids = {c: v / max(np.linalg.norm(v), 1e-12) for c, v in centroids.items()}
    similarity = np.array([float(f @ centroids[c]) if c in centroids else -1.0 for f, c in zip(sf, syn["label"],
                                                                                             strict=True)])
    pix = pixel_encoder(16)
    sp, rp = embed_table(syn, pix, spec.cache_dir), embed_table(real, pix, spec.cache_dir)
    novelty = np.minimum(_nearest_chunked(sf, rf) / max(calibrate(rf), 1e-9),
                         _nearest_chunked(sp, rp) / max(calibrate(rp), 1e-9))
    return pd.DataFrame({"synth_id": syn["synth_id"].astype(str), "ref_id": syn["ref_id"].astype(str),
                         "label": syn["label"].astype(str), "method": syn["method"].astype(str),
                         "confidence": probs[np.arange(len(syn)), target], "similarity": similarity,
                         "novelty": novelty})


def select(scores: pd.DataFrame, name: str, keep: float) -> pd.DataFrame:
    """The top ``keep`` of each (reference, method)'s images by ``name``'s score (ties: by id)."""
    check_filter(name)
    ranked = scores.sort_values([name, "synth_id"], ascending=[False, True], kind="mergesort")
    rank = ranked.groupby(["ref_id", "method"], sort=False).cumcount()
    size = ranked.groupby(["ref_id", "method"], sort=False)["synth_id"].transform("size")
    quota = np.ceil(keep * size - 1e-9).clip(lower=1)
    return ranked[rank < quota].sort_values("synth_id").reset_index(drop=True)


def kept_counts(scores: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """Images available and kept per class and method."""
    avail = scores.groupby(["label", "method"]).size().rename("available")
    have = kept.groupby(["label", "method"]).size().rename("kept")
    out = pd.concat([avail, have], axis=1).fillna(0).astype(int).reset_index()
    out["kept_share"] = out["kept"] / out["available"].clip(lower=1)
    return out


def write_view(store: str | Path, name: str, keep: float, scores: pd.DataFrame, cache_key: str) -> Path:
    """The filtered view: kept ids, their digest and the counts per class and method."""
    kept = select(scores, name, keep)
    ids = sorted(kept["synth_id"])
    digest = hashlib.sha256(f"{name}:{keep:g}\n".encode() + "\n".join(ids).encode()).hexdigest()[:16]
    return files.write_json(view_path(store, name, keep), {
        "filter": name, "keep": keep, "digest": digest, "cache_key": cache_key, "store_digest": store_digest(store),
        "counts": kept_counts(scores, kept).to_dict(orient="records"), "kept_ids": ids})


