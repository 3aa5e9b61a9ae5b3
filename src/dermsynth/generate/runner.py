"""Generation runner: K synthetic images per training-pool reference, batched, resumable.

Only training-pool images may be references (validation and test images never reach a
generator). Each image's seed derives from (reference, k, method, model fingerprint), so
a re-run skips what exists, regenerates identically what is missing, and ``shard=(i, n)``
lets n workers split the work without overlap.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermsynth.data.images import load_array
from dermsynth.data.splits import Split, refuse_held_out
from dermsynth.data.synthetic_store import (
    append_manifest,
    open_store,
    read_manifest,
    read_training_ids,
    record_references,
    save_image,
    write_training_ids,
)
from dermsynth.errors import ConfigError
from dermsynth.generate.backends.registry import Backend
from dermsynth.generate.methods import check_method, row_prompt
from dermsynth.generate.seeds import image_seed, synth_id
from dermsynth.progress import progress_bar


@dataclass(frozen=True)
class GenerationResult:
    """What one generation call did: images made now, images the store already held (from this
    model), wall time and throughput."""

    method: str
    generated: int
    skipped: int
    seconds: float
    images_per_second: float
    store: str


def run_generation(backend: Backend, refs: pd.DataFrame, method: str, per_image: int | Mapping[str, int],
                   store: str | Path, *,
                   split: Split, batch_size: int = 16, shard: tuple[int, int] = (0, 1), with_skin_type: bool = False,
                   prompt_template: str | None = None,
                   store_identity: tuple[str, str] | None = None) -> GenerationResult:
    """Generate ``per_image`` images of ``method`` for every row of ``refs`` into ``store`` (or, given
    a mapping, as many as it names for each reference id: an allocation's quotas; 0 makes none).

    ``split`` is the split the references come from: any reference that is a validation or
    test image of it is refused, and so is a generator that learnt from one. The store
    belongs to one generator — ``store_identity`` (name, fingerprint), by default this
    backend's; several models may share it (one per class) when the caller names the family.
    An image made by another model than this backend's is made again, never reused.
    """
    check_method(method)
    counts = per_image if isinstance(per_image, Mapping) else None
    if counts is None and per_image <= 0:
        raise ConfigError(f"per_image={per_image}: ask for at least 1 synthetic image per reference")
    i, n = shard
    if not (0 <= i < n):
        raise ConfigError(f"shard={i}/{n}: use i/n with 0 ≤ i < n")
    refuse_held_out(refs, split, "generation")
    learnt = backend.training_ids()
    refuse_held_out(pd.DataFrame({"id": sorted(learnt)}), split, "a generator trained on held-out images")
    name, identity = store_identity or (backend.model, backend.fingerprint)
    store = open_store(store, backend.name, name, identity)
    record_references(store, refs)
    if learnt - read_training_ids(store):
        write_training_ids(store, learnt | read_training_ids(store))
    made_before = read_manifest(store)
    done = set(made_before.loc[made_before["fingerprint"] == backend.fingerprint, "synth_id"])
    refs = refs.sort_values("id").reset_index(drop=True)
    jobs = [(r, k) for _, r in refs.iterrows()
            for k in range(int(counts.get(str(r["id"]), 0)) if counts is not None else per_image)]
    jobs = [j for idx, j in enumerate(jobs) if idx % n == i]
    todo = [j for j in jobs if synth_id(j[0]["id"], j[1], method) not in done]
    params = backend.params(method)
    t0, made = time.perf_counter(), 0
    bar = progress_bar(total=len(todo), desc=f"generate {method}", unit="img")
    # PNG encoding and writing run on a writer thread while the next batch is generated; a batch's
    # manifest rows are appended only after its images are on disk, and at most one batch waits.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer") as writer:
        pending = None
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            labels = [r["label"] for r, _ in batch]
            kw = {"template": prompt_template} if prompt_template else {}
            prompts = [row_prompt(r, with_skin_type=with_skin_type, **kw) for r, _ in batch]  # as DreamBooth learnt
            seeds = [image_seed(r["id"], k, method, backend.fingerprint) for r, k in batch]
            ref_arr = None
            if method != "text-to-image":
                ref_arr = np.stack([load_array(r["path"], backend.size) for r, _ in batch])
            images = backend.generate(method, labels, prompts, ref_arr, seeds)
            sids = [synth_id(r["id"], k, method) for r, k in batch]
            rows = [{"synth_id": sid, "ref_id": str(r["id"]), "label": r["label"],
                     "skin_type": None if pd.isna(r.get("skin_type")) else int(r["skin_type"]),
                     "method": method, "backend": backend.name, "model": backend.model,
                     "fingerprint": backend.fingerprint, "prompt": prompt, "seed": seed,
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "path": str(Path("images") / method / f"{sid}.png"),
                     **params}
                    for sid, (r, _), prompt, seed in zip(sids, batch, prompts, seeds, strict=True)]
            if pending is not None:
                pending.result()  # surfaces a write error before more work is done
            pending = writer.submit(_write_batch, store, rows, images)
            made += len(batch)
            bar.update(len(batch))
        if pending is not None:
            pending.result()
    bar.close()
    secs = time.perf_counter() - t0
    return GenerationResult(method=method, generated=made, skipped=len(jobs) - len(todo), seconds=secs,
                            images_per_second=made / secs if secs > 0 else 0.0, store=str(store))


def _write_batch(store: Path, rows: list[dict], images: np.ndarray) -> None:
    """Write a batch's images, then its manifest rows: a row never names an image not on disk."""
    for row, img in zip(rows, images, strict=True):
        save_image(img, store / row["path"])
    append_manifest(store, rows)
