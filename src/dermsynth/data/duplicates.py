"""Duplicate detection: exact (file content), near (perceptual hash) and, given an embedding
function, embedding-cosine duplicates.

The paper cleaned F17k with SelfClean; the minimum a study needs is to find exact and
near-duplicate images, because a duplicate with one copy in training and one in test is a
leak that inflates accuracy. Clusters become split groups so duplicates never straddle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd

from dermsynth.data.cache import file_digest
from dermsynth.data.groups import components
from dermsynth.data.images import load_rgb
from dermsynth.errors import ImageDecodeError


@dataclass
class DuplicateReport:
    """Pairs found and the cluster id of every image (NaN for singletons)."""

    pairs: pd.DataFrame  # id_a, id_b, kind (exact|near), distance, label_a, label_b
    clusters: pd.Series  # index aligned with the table
    unreadable: list[tuple[str, str]]

    def summary(self) -> dict:
        p = self.pairs
        return {
            "exact_pairs": int((p["kind"] == "exact").sum()),
            "near_pairs": int((p["kind"] == "near").sum()),
            "cross_class_pairs": int((p["label_a"] != p["label_b"]).sum()),
            "images_in_clusters": int(self.clusters.notna().sum()),
            "unreadable": len(self.unreadable),
        }

    def under_two_labels(self, limit: int | None = None) -> list[dict]:
        """The pairs that are one image filed under two labels (ids, labels, kind), the first ``limit``."""
        p = self.pairs
        cross = p[p["label_a"] != p["label_b"]].head(limit) if limit is not None else p[p["label_a"] != p["label_b"]]
        return [{k: str(r[k]) for k in ("id_a", "label_a", "id_b", "label_b", "kind")} for _, r in cross.iterrows()]

    def to_drop(self) -> list[int]:
        """Table indices to drop so that one image per cluster remains."""
        c = self.clusters.dropna()
        return list(c[c.duplicated()].index)


def perceptual_hashes(table: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """64-bit pHash per image as uint64 (0 for unreadable images, which are reported)."""
    out = np.zeros(len(table), dtype=np.uint64)
    bad = []
    for k, (img_id, path) in enumerate(zip(table["id"], table["path"], strict=True)):
        try:
            h = imagehash.phash(load_rgb(path))
            out[k] = np.uint64(int(str(h), 16))
        except ImageDecodeError as exc:
            bad.append((img_id, exc.reason))
    return out, bad


def _popcount64(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1)


def near_hash_pairs(a: np.ndarray, b: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """(i, j, Hamming distance) of every pHash ``a[i]`` within ``max_distance`` of ``b[j]``; zero
    hashes (unreadable images) match nothing."""
    ok_a, ok_b = np.flatnonzero(a != 0), np.flatnonzero(b != 0)
    out = []
    for start in range(0, len(ok_a), 1024):
        block = ok_a[start:start + 1024]
        dist = _popcount64(a[block][:, None] ^ b[ok_b][None, :])
        out += [(int(block[i]), int(ok_b[j]), int(dist[i, j])) for i, j in zip(*np.nonzero(dist <= max_distance),
                                                                                 strict=True)]
    return out


EmbedFn = Callable[[pd.DataFrame], np.ndarray]


def embedding_pairs(table: pd.DataFrame, embed: EmbedFn, max_cosine: float, skip: set[int]) -> list[tuple]:
    """Pairs whose embeddings' cosine distance ≤ max_cosine (catches crops and colour edits pHash misses).

    ``embed`` maps an image table to L2-normalised embeddings, one row per image.
    """
    ok = [i for i in range(len(table)) if i not in skip]
    emb = embed(table.iloc[ok])
    pairs = []
    for start in range(0, len(ok), 1024):
        d = 1.0 - emb[start:start + 1024] @ emb.T
        for bi, oj in zip(*np.nonzero(d <= max_cosine), strict=True):
            i, j = ok[start + int(bi)], ok[int(oj)]
            if i < j:
                pairs.append((i, j, "embedding", float(d[bi, oj])))
    return pairs


def find_duplicates(table: pd.DataFrame, max_distance: int = 4, embed: EmbedFn | None = None,
                    max_cosine: float = 0.02) -> DuplicateReport:
    """Exact duplicates by file digest; near duplicates by pHash Hamming distance ≤ max_distance and,
    with an ``embed`` function, by embedding cosine distance ≤ ``max_cosine``."""
    table = table.reset_index(drop=True)
    digests = [file_digest(p) if Path(p).is_file() else None for p in table["path"]]
    hashes, bad = perceptual_hashes(table)
    ok = np.array([i for i in range(len(table)) if table["id"][i] not in {b[0] for b in bad}])
    pairs = []
    by_digest: dict[str, int] = {}
    for i, d in enumerate(digests):
        if d is None:
            continue
        if d in by_digest:
            pairs.append((by_digest[d], i, "exact", 0))
        else:
            by_digest[d] = i
    exact = {(a, b) for a, b, _, _ in pairs}
    for start in range(0, len(ok), 1024):
        block = ok[start:start + 1024]
        dist = _popcount64(hashes[block][:, None] ^ hashes[ok][None, :])
        for bi, oj in zip(*np.nonzero(dist <= max_distance), strict=True):
            i, j = int(block[bi]), int(ok[oj])
            if i < j and (i, j) not in exact and digests[i] != digests[j]:
                pairs.append((i, j, "near", int(dist[bi, oj])))
    if embed is not None:
        bad_rows = {i for i in range(len(table)) if table["id"][i] in {b[0] for b in bad}}
        found = {(a, b) for a, b, _, _ in pairs}
        pairs += [p for p in embedding_pairs(table, embed, max_cosine, bad_rows) if (p[0], p[1]) not in found]
    roots = components(len(table), [p[0] for p in pairs], [p[1] for p in pairs])
    sizes = pd.Series(roots).value_counts()
    first = pd.Series(table["id"].to_numpy()).groupby(roots).transform("min").to_numpy()
    clusters = pd.Series([f"dup-{first[i]}" if sizes[r] > 1 else None for i, r in enumerate(roots)],
                         index=table.index, dtype=object)
    frame = pd.DataFrame(pairs, columns=["a", "b", "kind", "distance"])
    frame = pd.DataFrame({
        "id_a": table["id"].to_numpy()[frame["a"].to_numpy(dtype=int)] if len(frame) else [],
        "id_b": table["id"].to_numpy()[frame["b"].to_numpy(dtype=int)] if len(frame) else [],
        "kind": frame["kind"], "distance": frame["distance"],
        "label_a": table["label"].to_numpy()[frame["a"].to_numpy(dtype=int)] if len(frame) else [],
        "label_b": table["label"].to_numpy()[frame["b"].to_numpy(dtype=int)] if len(frame) else [],
    })
    return DuplicateReport(frame, clusters, bad)

