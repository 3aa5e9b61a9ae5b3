"""Stages around the synthetic store: checks before anything trains, the references a store
must cover, and the recognisability check of a finished store (cached by digests)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from dermsynth import files
from dermsynth.audits.recognisability import recognisability
from dermsynth.data.leakage import assert_clean, audit, content_leaks
from dermsynth.data.splits import Split, load_split, load_splits
from dermsynth.data.synthetic_store import is_store, store_digest
from dermsynth.errors import ConfigError
from dermsynth.experiments.spec import ExperimentSpec
from dermsynth.train.spec import RunSpec
from dermsynth.train.training_set import real_subset

log = logging.getLogger(__name__)


def references_needed(runs: list[RunSpec], splits: dict) -> pd.DataFrame:
    """The union of the real training subsets of all cells that use synthetic data."""
    frames = []
    for run in (r for r in runs if r.synthetic_per_real > 0):
        real = real_subset(run, splits[run.split_spec()])
        if run.synthetic_classes is not None:
            real = real[real["label"].isin(run.synthetic_classes)]
        frames.append(real)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames).drop_duplicates("id").reset_index(drop=True)


def preflight(spec: ExperimentSpec, runs: list[RunSpec]) -> None:
    """Catch what would refuse the study later before any compute is spent: n_real beyond the pool,
    missing stores, and (for a study whose generator learns from the pool) a copy of a held-out
    image in the pool, which the leakage audit would find only after generation."""
    splits = load_splits(r.split_spec() for r in runs)
    if spec.audit_leakage and spec.generator is not None:
        for split_spec, split in sorted(splits.items(), key=lambda item: str(item[0])):
            if split_spec.cleaning is None and split_spec.dataset != "demo":  # cleaned splits group their copies
                pool_copies_of_held_out(split)
    for run in runs:
        real_subset(run, splits[run.split_spec()])  # raises SplitError naming the class and sizes
        if run.synthetic_per_real > 0 and spec.generator is None and not is_store(run.synthetic_store):
            raise ConfigError(f"synthetic_store={run.synthetic_store!r} is not a synthetic store (no store.json); "
                              "create it with `dermsynth generator sample` or add a [generator] section")


def pool_copies_of_held_out(split: Split) -> None:
    """A LeakageError naming every pool image that is the same picture as a test or validation image."""
    pool = set(split.table.loc[split.table["split"] == "pool", "id"].astype(str))
    problems = audit(split) + content_leaks(split, pool)
    if problems:
        assert_clean([*problems, "found before any compute was spent: turn cleaning on ([base.cleaning]) so "
                                 "copies share a split group"])


def recognisability_stage(runs: list[RunSpec], store: str | Path, folder: Path) -> Path | None:
    """Score the store with a classifier trained on the real pool, into ``folder``.

    Cached while the store, the split and the classifier's settings are unchanged (their
    digests are the cache key). The classifier uses the settings of the first cell with
    synthetic data (backbone, image size, epochs), trained on every real pool image.
    """
    needs = [r for r in runs if r.synthetic_per_real > 0]
    if not needs or not is_store(store):
        return None
    spec = needs[0].model_copy(update={"synthetic_per_real": 0, "use_all_pool": True, "seed": 0,
                                       "synthetic_fingerprint": None, "data_digest": None})
    split = load_split(spec.split_spec())
    key = f"{store_digest(store)}:{split.digest()}:{spec.run_id()}"
    done = folder / "recognisability.json"
    if done.exists() and files.read_json(done).get("cache_key") == key:
        return done
    table = recognisability(split, store, spec, folder)
    files.write_json(done, {**files.read_json(done), "cache_key": key})
    for row in table.itertuples():
        log.info("recognisability — %s: %.1f %% of %d (chance %.1f %%, p = %.2g)", row.group, 100 * row.accuracy,
                 row.n, 100 * row.chance, row.p_above_chance)
    return done
