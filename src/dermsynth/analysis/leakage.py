"""Leakage audit: prove from the manifests that nothing held-out reaches training.

Checks: (1) no synthetic image's reference is a validation/test image; (2) no generator
fine-tuning image is held out; (3) no patient or duplicate group straddles splits.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dermsynth.data.splits import Split, check_split_leakage, held_out_ids
from dermsynth.errors import LeakageError


def audit(split: Split, manifest: pd.DataFrame | None = None, finetune_ids: list[str] | None = None) -> list[str]:
    """One message per violation (empty list = clean)."""
    problems = list(check_split_leakage(split))
    held = held_out_ids(split)
    if manifest is not None and len(manifest):
        bad = manifest[manifest["ref_id"].astype(str).isin(held)]
        for _, r in bad.head(50).iterrows():
            problems.append(f"synthetic image {r['synth_id']} has held-out reference {r['ref_id']}")
        if len(bad) > 50:
            problems.append(f"... and {len(bad) - 50} more synthetic images with held-out references")
    for i in finetune_ids or []:
        if str(i) in held:
            problems.append(f"generator fine-tuning image {i} is a validation/test image")
    return problems


def audit_runs(runs) -> None:
    """Audit every (split, store) pair an experiment uses; raise on any violation."""
    from dermsynth.generate.store import read_manifest
    from dermsynth.train.run import load_splits, split_key

    splits = load_splits(runs)
    seen = set()
    for run in runs:
        key = (split_key(run), run.synthetic_store if run.synthetic_per_real else None)
        if key in seen:
            continue
        seen.add(key)
        split = splits[split_key(run)]
        manifest = None
        if run.synthetic_per_real and run.synthetic_store and Path(run.synthetic_store, "store.json").exists():
            manifest = read_manifest(run.synthetic_store)
        ft = []
        if run.synthetic_store and Path(run.synthetic_store, "finetune_ids.txt").exists():
            ft = Path(run.synthetic_store, "finetune_ids.txt").read_text().split()
        problems = audit(split, manifest, ft)
        if problems:
            raise LeakageError("leakage audit failed:\n  " + "\n  ".join(problems[:30]))
