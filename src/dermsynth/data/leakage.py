"""Leakage audit: prove from the records that nothing held-out reaches training.

Checks: (1) no synthetic image's reference is a validation/test image; (2) no image the
generator learnt from (pre-training on the pool, fine-tuning) is held out; (3) no patient or
duplicate group straddles splits.
"""

from __future__ import annotations

import pandas as pd

from dermsynth.data.duplicates import near_hash_pairs, perceptual_hashes
from dermsynth.data.splits import HELD_OUT, Split, check_split_leakage, held_out_ids
from dermsynth.data.synthetic_store import is_store, read_manifest, read_training_ids
from dermsynth.errors import ConfigError, DataError, LeakageError


def audit(split: Split, manifest: pd.DataFrame | None = None, training_ids=None) -> list[str]:
    """One message per violation (empty list = clean)."""
    problems = list(check_split_leakage(split))
    held = held_out_ids(split)
    if manifest is not None and len(manifest):
        bad = manifest[manifest["ref_id"].astype(str).isin(held)]
        for _, r in bad.head(50).iterrows():
            problems.append(f"synthetic image {r['synth_id']} has held-out reference {r['ref_id']}")
        if len(bad) > 50:
            problems.append(f"... and {len(bad) - 50} more synthetic images with held-out references")
    for i in sorted(training_ids or []):
        if str(i) in held:
            problems.append(f"generator training image {i} is a validation/test image")
    used = set(map(str, training_ids or []))
    if manifest is not None and len(manifest):
        used |= set(manifest["ref_id"].astype(str))
    problems += content_leaks(split, used - held)
    return problems


# pHash distance at which two images count as one picture for the guard: re-saved, re-encoded or
# resized copies land at 0–2. A cleaned split uses its cleaning's threshold (those pairs are then
# grouped, so only a failure of cleaning is flagged).
GUARD_DISTANCE = 2


def content_leaks(split: Split, ids: set[str], max_distance: int | None = None) -> list[str]:
    """Images a generator learnt from or was given as references (``ids``) whose perceptual hash is
    within ``max_distance`` of a validation/test image's: the same picture under another id (a
    re-upload, a resized copy) is a leak the id check cannot see."""
    if max_distance is None:
        max_distance = split.cleaning.get("settings", {}).get("max_distance", GUARD_DISTANCE)
    table = split.table
    held = table[table["split"].isin(HELD_OUT)]
    used = table[table["id"].astype(str).isin(ids)]
    if held.empty or used.empty:
        return []
    h_held, _ = perceptual_hashes(held)
    h_used, _ = perceptual_hashes(used)
    problems = []
    for i, j, dist in near_hash_pairs(h_used, h_held, max_distance):
        problems.append(f"generator image {used['id'].iloc[i]} is a near-duplicate (pHash distance {dist}) of "
                        f"{held['split'].iloc[j]} image {held['id'].iloc[j]}; clean the data (base.cleaning) so "
                        "duplicates share a split group")
    return problems


def audit_store(split: Split, store) -> list[str]:
    """Audit a split together with a synthetic store's manifest and recorded training ids
    (``store`` None: the split alone). A path that is not a store is an error, never a clean audit
    of nothing: a mistyped path must not read as proof of no leakage."""
    if store is None:
        return audit(split)
    if not is_store(store):
        raise DataError(f"{store} is not a synthetic store (no store.json): nothing there to audit; "
                        "pass the folder `dermsynth generator sample --out` wrote")
    return audit(split, read_manifest(store), read_training_ids(store))


def require_auditable(store) -> tuple[int, int]:
    """The store's counts of synthetic images and generator training ids, or a DataError when
    there is nothing to audit (no store, or a store with neither)."""
    if store is None:
        raise ConfigError("audit leakage needs --store STORE (a folder written by `dermsynth generator sample`): "
                          "without one there is nothing to prove clean")
    if not is_store(store):
        raise DataError(f"{store} is not a synthetic store (no store.json): nothing there to audit; "
                        "pass the folder `dermsynth generator sample --out` wrote")
    n_syn, n_ids = len(read_manifest(store)), len(read_training_ids(store))
    if n_syn == 0 and n_ids == 0:
        raise DataError(f"{store} holds no synthetic image and no generator training ids: nothing to audit; "
                        "generate into it first (`dermsynth generator sample --out {store}`)")
    return n_syn, n_ids


def assert_clean(problems: list[str]) -> None:
    if problems:
        raise LeakageError("leakage audit failed:\n  " + "\n  ".join(problems[:30]))
