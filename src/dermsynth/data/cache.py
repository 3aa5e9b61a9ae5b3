"""Decoded-image cache: decode and resize each image once, then memory-map uint8 arrays.

Training reads the same few thousand images for dozens of epochs and hundreds of runs;
decoding JPEGs each time would dominate a CPU run. The cache key is the file *content*
(so a renamed file hits the cache, an edited one misses) plus the resolution.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from dermsynth.data.images import load_array
from dermsynth.errors import ImageDecodeError
from dermsynth.io import atomic_path


def file_digest(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class CachedImages:
    """Images of a table as an (N, H, W, 3) uint8 array (memory-mapped), in table order."""

    ids: list[str]
    array: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def index_of(self, ids) -> np.ndarray:
        pos = {k: i for i, k in enumerate(self.ids)}
        return np.array([pos[i] for i in ids], dtype=np.int64)


def cache_images(table: pd.DataFrame, size: int, cache_dir: str | Path = ".dermsynth-cache/images",
                 skip_bad: bool = False, progress: bool = True) -> CachedImages:
    """Decode ``table``'s images at ``size`` px into per-image ``.npy`` files and stack them.

    Unreadable files raise :class:`ImageDecodeError` naming the file, unless ``skip_bad``,
    in which case they are left out and listed in ``skipped`` (id, reason).
    """
    folder = Path(cache_dir) / f"{size}px"
    folder.mkdir(parents=True, exist_ok=True)
    ids, arrays, skipped = [], [], []
    rows = list(zip(table["id"], table["path"], strict=True))
    for img_id, path in tqdm(rows, desc=f"images @ {size}px", disable=not progress or len(rows) < 200,
                             leave=False):
        try:
            if not Path(path).exists():
                raise ImageDecodeError(path, "file not found")
            entry = folder / f"{file_digest(path)}.npy"
            if entry.exists():
                arr = np.load(entry, mmap_mode="r")
            else:
                arr = load_array(path, size)
                with atomic_path(entry) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, arr)
        except ImageDecodeError as exc:
            if not skip_bad:
                raise
            skipped.append((img_id, exc.reason))
            continue
        ids.append(img_id)
        arrays.append(arr)
    stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    return CachedImages(ids, stacked, skipped)


def embed_table(table: pd.DataFrame, encoder, cache_dir: str | Path = ".dermsynth-cache") -> np.ndarray:
    """Embeddings of a table's images (rows in table order) by ``encoder`` — any callable on uint8
    arrays (N, S, S, 3) with a ``size`` attribute. Decoded images are cached; embeddings are not."""
    cached = cache_images(table, encoder.size, Path(cache_dir) / "images", progress=False)
    return encoder(cached.array)
