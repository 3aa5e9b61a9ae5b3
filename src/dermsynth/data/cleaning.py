"""Cleaning as part of a split: exact, perceptual-hash and embedding near-duplicates become split
groups, so no copy of a test image is ever trained on.

The paper cleaned Fitzpatrick 17k (SelfClean) before splitting; a ``cleaning`` setting on a
split does the minimum the SPEC asks — exact files, pHash and (with an encoder) embedding
near-duplicates, clustered — every time that split is loaded. The clusters are cached by the
settings and the images' identity (id, size, modification time), so a study computes them once
(its cleaning stage) and every later load reads them; an edited or added image recomputes them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from dermsynth import files
from dermsynth.data.groups import components, edges_by_key

log = logging.getLogger(__name__)

# Shared by every study on this machine: the key covers the images and the settings.
CLEANING_CACHE = Path(".dermsynth-cache") / "cleaning"


class CleaningSpec(BaseModel):
    """How duplicates are found (data/duplicates.py): pHash Hamming distance ≤ ``max_distance``,
    and with ``embedding`` (clip[:ID] | timm:NAME | pixels[:SIZE]) cosine distance ≤ ``max_cosine``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_distance: int = Field(4, ge=0, le=64)
    embedding: str | None = None
    max_cosine: float = Field(0.02, ge=0, lt=1)


def cleaning_key(table: pd.DataFrame, spec: CleaningSpec) -> str:
    """Hash of the settings and of each image's id, size and modification time (a cheap stat,
    not a read: a changed file changes its size or time)."""
    h = hashlib.sha256(spec.model_dump_json().encode())
    for img_id, path in sorted(zip(table["id"].astype(str), table["path"].astype(str), strict=True)):
        try:
            st = os.stat(path)
            h.update(f"{img_id}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{img_id}:missing\n".encode())
    return h.hexdigest()[:16]


def duplicate_clusters(table: pd.DataFrame, spec: CleaningSpec, cache: str | Path = CLEANING_CACHE,
                       cache_dir: str | Path = ".dermsynth-cache") -> tuple[pd.Series, dict]:
    """Cluster of each row (None for images in no cluster) and a summary; cached under ``cache``."""
    key = cleaning_key(table, spec)
    csv, meta = Path(cache) / f"{key}.csv", Path(cache) / f"{key}.json"
    if csv.exists() and meta.exists():
        found = pd.read_csv(csv, dtype=str)
        clusters = table["id"].astype(str).map(dict(zip(found["id"], found["cluster"], strict=True)))
        return clusters.astype(object).where(clusters.notna(), None), files.read_json(meta)
    from dermsynth.data.duplicates import find_duplicates

    embed = None
    if spec.embedding:
        from dermsynth.data.cache import embed_table
        from dermsynth.models.encoders import make_encoder

        encoder = make_encoder(spec.embedding)
        embed = lambda t: embed_table(t, encoder, cache_dir)  # noqa: E731
    rep = find_duplicates(table, spec.max_distance, embed=embed, max_cosine=spec.max_cosine)
    clusters = rep.clusters.reindex(range(len(table)))
    clusters.index = table.index
    summary = {"key": key, "settings": spec.model_dump(), "n_images": int(len(table)), **rep.summary(),
               "clusters": int(clusters.dropna().nunique()), "under_two_labels": rep.under_two_labels(SHOWN_PAIRS)}
    pairs = pd.DataFrame({"id": table["id"].astype(str), "cluster": clusters}).dropna()
    files.write_text(csv, pairs.to_csv(index=False))
    files.write_json(meta, summary)  # written last: it marks the entry complete
    log.info("cleaning: %d exact and %d near-duplicate pairs (%d cross-class) in %d images → %d clusters",
             summary["exact_pairs"], summary["near_pairs"], summary["cross_class_pairs"], len(table),
             summary["clusters"])
    if summary["under_two_labels"]:
        log.warning("%s", two_label_rule(summary["under_two_labels"], summary["cross_class_pairs"]))
    return clusters, summary


SHOWN_PAIRS = 20


def two_label_rule(examples: list[dict], n: int) -> str:
    """The one rule for an image under two labels, with the pairs it applies to."""
    named = "; ".join(f"{p['id_a']} ({p['label_a']}) = {p['id_b']} ({p['label_b']})" for p in examples[:5])
    return (f"{n} image pair(s) are one image filed under two labels, e.g. {named}: each copy keeps its label "
            "(which is right cannot be known here) and both go to the same side of the split, so neither copy "
            "is tested against the other; remove the wrong copy, or list it in exclude_file")


def merge_clusters(a: pd.Series | None, b: pd.Series | None) -> pd.Series | None:
    """One cluster per connected set of two clusterings' links (e.g. a duplicates file and cleaning)."""
    if a is None or b is None:
        return a if b is None else b
    ea, eb = edges_by_key(a.to_numpy()), edges_by_key(b.to_numpy())
    roots = components(len(a), np.concatenate([ea[0], eb[0]]), np.concatenate([ea[1], eb[1]]))
    linked = pd.Series(roots).duplicated(keep=False).to_numpy()
    return pd.Series([f"c{r}" if k else None for r, k in zip(roots, linked, strict=True)], index=a.index,
                     dtype=object)
