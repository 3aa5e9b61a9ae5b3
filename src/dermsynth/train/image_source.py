"""Where a run's images come from during training: all in RAM, or streamed batch by batch.

Why: at paper scale (Fig. 4: 75 synthetic per real × 64 real × 9 classes ≈ 44,000 images at
224 px ≈ 6.6 GB per run, times parallel runs) one in-RAM tensor per run does not fit. A
``StreamedImages`` reads each batch from the decoded-image cache (through a DataLoader
with workers that prefetch the next batches), so memory stays at a few batches plus the OS
page cache. Both give the same batches in the same order, so results do not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dermsynth.data.cache import CachedImages

# Stream when the decoded training images would take more than this much RAM.
STREAM_ABOVE_BYTES = 1 << 30


class InMemoryImages:
    """uint8 (N, 3, H, W) tensor of the images of ``ids``."""

    def __init__(self, cache: CachedImages, ids) -> None:
        arr = cache.gather(cache.index_of(ids))
        self.x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx) -> torch.Tensor:
        return self.x[idx]


class StreamedImages(Dataset):
    """The images of ``ids`` read from the cache when a batch asks for them."""

    def __init__(self, cache: CachedImages, ids) -> None:
        self.cache = cache
        self.positions = cache.index_of(ids)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, slice):
            idx = range(*idx.indices(len(self)))
        rows = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        arr = self.cache.gather(self.positions[rows])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def image_source(cache: CachedImages, ids, stream: bool | None = None):
    """In RAM for small sets, streamed above STREAM_ABOVE_BYTES (or as ``stream`` says)."""
    if stream is None:
        stream = len(ids) * cache.size * cache.size * 3 > STREAM_ABOVE_BYTES
    return StreamedImages(cache, ids) if stream else InMemoryImages(cache, ids)


def batches(images, order: torch.Tensor, batch_size: int, steps: int, workers: int = 0
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(indices, uint8 images) for ``steps`` batches of ``order``; streamed sources are read by
    a DataLoader whose workers prefetch the next batches while this one trains."""
    chunks = [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]
    if isinstance(images, StreamedImages) and workers > 0:
        loader = DataLoader(images, batch_size=None, sampler=chunks, num_workers=workers, prefetch_factor=4,
                            persistent_workers=False)
        yield from zip(chunks, loader, strict=True)
    else:
        for idx in chunks:
            yield idx, images[idx]
