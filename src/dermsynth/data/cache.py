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

from dermsynth.data.images import load_array
from dermsynth.errors import ImageDecodeError
from dermsynth.files import atomic_path
from dermsynth.progress import progress_bar


def file_digest(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class CachedImages:
    """Images of a table as cache entries (one ``.npy`` of (H, W, 3) uint8 per image), in table order.

    Nothing is held in RAM: ``gather`` reads the images of one batch (the OS page cache keeps
    hot ones), ``array`` stacks them all for small jobs. Paths, not memory maps, because each
    map holds a file descriptor and a paper-scale run has tens of thousands of images.
    """

    ids: list[str]
    entries: list[Path]
    size: int
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def index_of(self, ids) -> np.ndarray:
        pos = {k: i for i, k in enumerate(self.ids)}
        return np.array([pos[i] for i in ids], dtype=np.int64)

    def gather(self, positions) -> np.ndarray:
        """(B, H, W, 3) uint8 of the images at ``positions``."""
        if len(positions) == 0:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return np.stack([np.load(self.entries[int(i)]) for i in positions])

    @property
    def array(self) -> np.ndarray:
        """All images as one in-RAM (N, H, W, 3) array."""
        return self.gather(range(len(self.entries)))


def cache_images(table: pd.DataFrame, size: int, cache_dir: str | Path = ".dermsynth-cache/images",
                 skip_bad: bool = False) -> CachedImages:
    """Decode ``table``'s images at ``size`` px into per-image ``.npy`` files (once; content-keyed).

    Unreadable files raise :class:`ImageDecodeError` naming the file, unless ``skip_bad``,
    in which case they are left out and listed in ``skipped`` (id, reason).
    """
    folder = Path(cache_dir) / f"{size}px"
    folder.mkdir(parents=True, exist_ok=True)
    ids, entries, skipped = [], [], []
    rows = list(zip(table["id"], table["path"], strict=True))
    for img_id, path in progress_bar(rows, desc=f"images @ {size}px", min_items=200, leave=False):
        try:
            if not Path(path).exists():
                raise ImageDecodeError(path, "file not found")
            entry = folder / f"{file_digest(path)}.npy"
            if not entry.exists():
                arr = load_array(path, size)
                with atomic_path(entry) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, arr)
        except ImageDecodeError as exc:
            if not skip_bad:
                raise
            skipped.append((img_id, exc.reason))
            continue
        ids.append(img_id)
        entries.append(entry)
    return CachedImages(ids, entries, size, skipped)


def embed_table(table: pd.DataFrame, encoder, cache_dir: str | Path = ".dermsynth-cache") -> np.ndarray:
    """Embeddings of a table's images (rows in table order) by ``encoder`` — any callable on uint8
    arrays (N, S, S, 3) with a ``size`` attribute. Decoded images are cached; embeddings are not."""
    cached = cache_images(table, encoder.size, Path(cache_dir) / "images")
    return encoder(cached.array)
