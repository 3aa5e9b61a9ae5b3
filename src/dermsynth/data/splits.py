"""Leakage-proof splits: held-out test and validation, nested training subsets.

The protocol of the paper: per class (or per skin-type group for DDI) a fixed number of
test and validation images, the rest a training pool from which nested subsets of
``n_real`` images per class are drawn for each seed (the 16-subset lies inside the
32-subset). Images of one patient, and exact or near duplicates, form a *group* that never
straddles two splits. The test/validation split is fixed by ``split_seed`` so every run
is scored on the same images (the paper's proportion tests assume that).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ConfigDict

from dermsynth import files
from dermsynth.data.cleaning import duplicate_clusters, merge_clusters
from dermsynth.data.groups import components, edges_by_key
from dermsynth.data.missing import refuse_short_classes
from dermsynth.data.registry import load_dataset
from dermsynth.data.split_fields import SplitFields
from dermsynth.data.synthetic_store import referenced_ids
from dermsynth.errors import DataError, LeakageError, SplitError

log = logging.getLogger(__name__)

HELD_OUT = ("val", "test")


class SplitSpec(SplitFields):
    """Everything that decides which images are test, validation and training pool.

    Runs sharing a SplitSpec share one split (hashable: a grid of hundreds of runs loads its
    data once); every command that needs a split builds one of these, nothing else.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_id_list(path: str | Path) -> set[str]:
    """Ids from a CSV with an ``id`` column or a text file with one id per line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found (exclude_file): give a CSV with an id column or one id per line")
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str)
        if "id" not in frame:
            raise DataError(f"{path} has no 'id' column (exclude_file); columns: {list(frame.columns)}")
        return set(frame["id"].dropna())
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def read_duplicate_clusters(path: str | Path, table: pd.DataFrame) -> pd.Series:
    """Cluster of each table row (NaN for images in no cluster) from an ``id,cluster`` CSV."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found (duplicates_file): write it with `dermsynth data clean`")
    frame = pd.read_csv(path, dtype=str)
    missing = [c for c in ("id", "cluster") if c not in frame]
    if missing:
        raise DataError(f"{path} lacks the column(s) {missing} (duplicates_file); expected id,cluster as "
                        "`dermsynth data clean` writes to *_clusters.csv")
    return table["id"].map(dict(zip(frame["id"], frame["cluster"], strict=True)))


def load_split(spec: SplitSpec) -> Split:
    """The image table and its held-out split for a spec (deterministic by split_seed)."""
    table = load_dataset(spec.dataset, spec.root, classes=spec.classes, n_per_class=spec.demo_n_per_class,
                         size=spec.demo_size, seed=0, label_column=spec.label_column,
                         skin_weights=spec.demo_skin_weights)
    missing = {str(k): int(v) for k, v in table.attrs.get("missing_per_class", {}).items() if v}
    if spec.exclude_file:
        dropped = read_id_list(spec.exclude_file)
        table = table[~table["id"].isin(dropped)].reset_index(drop=True)
        log.info("excluded %d images listed in %s", len(dropped), spec.exclude_file)
    duplicates = read_duplicate_clusters(spec.duplicates_file, table) if spec.duplicates_file else None
    cleaned: dict = {}
    if spec.cleaning is not None:
        clusters, cleaned = duplicate_clusters(table, spec.cleaning)
        duplicates = merge_clusters(duplicates, clusters)
    if spec.stratify == "skin_group" and table["skin_group"].isna().any():
        unknown = int(table["skin_group"].isna().sum())
        log.warning("%d images without a skin type are left out of a skin-group-stratified split", unknown)
        keep = table["skin_group"].notna()
        table = table[keep].reset_index(drop=True)
        duplicates = None if duplicates is None else duplicates[keep].reset_index(drop=True)
    if missing:
        refuse_short_classes(table, missing, spec)
    pool_only = referenced_ids(spec.held_out_avoids_store) if spec.held_out_avoids_store else None
    split = make_split(table, spec.n_test, spec.n_val, spec.split_seed, stratify=spec.stratify,
                       duplicate_groups=duplicates, pool_only=pool_only)
    split.missing_per_class = missing
    split.cleaning = cleaned
    assert_no_leakage(split)
    return split


def load_splits(specs) -> dict[SplitSpec, Split]:
    """One split per distinct SplitSpec."""
    out: dict[SplitSpec, Split] = {}
    for spec in specs:
        if spec not in out:
            out[spec] = load_split(spec)
    return out


@dataclass
class Split:
    """An image table with a ``split`` column (test / val / pool) and a ``group`` column."""

    table: pd.DataFrame
    split_seed: int = 0
    # Images of each class listed by the data set but missing on disk (a partial download): runs
    # record it and the report says it; not part of the digest (the table already shows what ran).
    missing_per_class: dict[str, int] = field(default_factory=dict)
    # What the split's cleaning found (data/cleaning.py summary; empty without cleaning).
    cleaning: dict = field(default_factory=dict)

    @property
    def pool(self) -> pd.DataFrame:
        return self.table[self.table["split"] == "pool"]

    @property
    def val(self) -> pd.DataFrame:
        return self.table[self.table["split"] == "val"]

    @property
    def test(self) -> pd.DataFrame:
        return self.table[self.table["split"] == "test"]

    def train_subset(self, n_real: int, seed: int) -> pd.DataFrame:
        """``n_real`` pool images per class; subsets of one seed are nested."""
        pool = self.pool
        parts = []
        for label, rows in pool.groupby("label", sort=True):
            if len(rows) < n_real:
                gone = self.missing_per_class.get(str(label), 0)
                raise SplitError(
                    f"class {label!r} has {len(rows)} training-pool images but n_real={n_real} "
                    f"was asked; lower n_real to ≤ {len(rows)} or reduce the test/val sizes"
                    + (f" ({gone} of its images are missing on disk: download them)" if gone else ""))
            parts.append(rows.loc[_seeded_order(rows["id"], seed)].iloc[:n_real])
        return pd.concat(parts).reset_index(drop=True)

    def digest(self) -> str:
        """Hash of which image is in which split (and group): a changed data set or split changes it."""
        cols = self.table[["id", "label", "split", "group"]].sort_values("id").astype(str)
        return hashlib.sha256(cols.to_csv(index=False).encode()).hexdigest()[:16]

    def content_digest(self) -> str:
        """Hash of every image's bytes (the same content digests the image cache keys on).

        :meth:`digest` covers which image is where, not what the files hold: a folder data set
        whose images were edited in place keeps its ids and its digest. Runs record this one
        beside it, and results made from other bytes are re-run and left out of reports."""
        from dermsynth.data.cache import file_digest

        h = hashlib.sha256()
        for img_id, path in sorted(zip(self.table["id"].astype(str), self.table["path"].astype(str), strict=True)):
            h.update(f"{img_id}:{file_digest(path) if Path(path).exists() else 'missing'}\n".encode())
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        return files.write_parquet(path, self.table)

    @classmethod
    def load(cls, path: str | Path) -> Split:
        return cls(pd.read_parquet(path))


def _seeded_order(ids: pd.Series, seed: int) -> pd.Index:
    """A per-seed random order that does not depend on the table's row order."""
    keys = [hash_unit(f"{seed}:{i}") for i in ids]
    return ids.index[np.argsort(keys, kind="stable")]


def hash_unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def assign_groups(table: pd.DataFrame, duplicate_groups: pd.Series | None = None) -> pd.Series:
    """Group ids: images of one patient or one duplicate cluster share a group.

    Each group is named by its smallest member id, so ids do not depend on row order.
    """
    keys = [table["patient"].to_numpy()]
    if duplicate_groups is not None:
        keys.append(duplicate_groups.reindex(table.index).to_numpy())
    edges = [edges_by_key(k) for k in keys]
    a = np.concatenate([e[0] for e in edges])
    b = np.concatenate([e[1] for e in edges])
    roots = pd.Series(components(len(table), a, b), index=table.index)
    return pd.Series(table["id"].to_numpy(), index=table.index).groupby(roots).transform("min")


def make_split(table: pd.DataFrame, n_test: int = 40, n_val: int = 40, split_seed: int = 0,
               stratify: str = "label", duplicate_groups: pd.Series | None = None,
               pool_only: set[str] | None = None) -> Split:
    """Assign whole groups to test, then validation, until each stratum has its quota.

    ``stratify`` is ``label`` (per-class quotas, F17k-9) or ``skin_group`` (DDI: e.g.
    32 test images per skin-type group). With ``pool_only`` (a store's references), a group
    holding any of them stays in the training pool and the pool holds only such groups: the
    images neither held out nor referenced are left out. Raises SplitError naming the stratum
    that has too few images.
    """
    table = table.reset_index(drop=True).copy()
    if stratify not in table.columns:
        raise SplitError(f"stratify={stratify!r} is not a column of the image table")
    if table[stratify].isna().any():
        n = int(table[stratify].isna().sum())
        raise SplitError(f"{n} images have no {stratify!r}; drop them or stratify by another column")
    table["group"] = assign_groups(table, duplicate_groups)
    counts = table[stratify].value_counts()
    for stratum, have in counts.items():
        if have < n_test + n_val + 1:
            raise SplitError(
                f"{stratify} {stratum!r} has {have} images; test ({n_test}) + validation ({n_val}) "
                f"+ at least 1 training image are needed — lower n_test/n_val or choose classes (--classes "
                "f17k9 | top-N | a list; `dermsynth data info` counts them)")
    # Per group, its rows and its count per stratum, once: per-group pandas lookups in the loop are
    # slow on a table of F17k's size (docs/benchmarks.md), and every task of a study loads its split.
    positions = table.groupby("group", sort=False).indices
    strata = table[stratify].to_numpy()
    per_group = {g: Counter(strata[rows].tolist()) for g, rows in positions.items()}
    order = sorted(positions, key=lambda g: hash_unit(f"split{split_seed}:{g}"))
    assigned = np.full(len(table), "pool", dtype=object)
    taken: set = set(table.loc[table["id"].astype(str).isin(pool_only), "group"]) if pool_only else set()
    for name, quota in (("test", n_test), ("val", n_val)):
        need = {s: quota for s in counts.index}
        for g in order:
            if g in taken:
                continue
            per = per_group[g]
            if all(need[s] >= k for s, k in per.items()) and any(need[s] > 0 for s in per):
                assigned[positions[g]] = name
                taken.add(g)
                for s, k in per.items():
                    need[s] -= k
            if not any(need.values()):
                break
        short = {s: k for s, k in need.items() if k > 0}
        if short:
            raise SplitError(f"could not fill the {name} quota for {short} without splitting a "
                             "patient or duplicate group" + (" or holding out an image the store was made from "
                                                            "(held_out_avoids_store)" if pool_only else "")
                             + "; lower the quota")
    table["split"] = assigned
    if pool_only:  # the pool is the store's references alone: a run draws only images it can add to
        kept = table["group"].isin(taken) | (table["split"] != "pool")
        table = table[kept | table["id"].astype(str).isin(pool_only)].reset_index(drop=True)
    for s, n in table[table["split"] == "pool"][stratify].value_counts().reindex(counts.index).items():
        if pd.isna(n) or n == 0:
            raise SplitError(f"{stratify} {s!r} has no training-pool images left after test/validation")
    return Split(table, split_seed)


def check_split_leakage(split: Split, extra_keys: dict[str, pd.Series] | None = None) -> list[str]:
    """Return one message per violation: a group (patient, duplicate cluster, or any key in
    ``extra_keys``, e.g. a content hash) with members in two different splits."""
    t = split.table
    problems = []
    keys = {"group": t["group"], "patient": t["patient"]}
    keys.update(extra_keys or {})
    for name, key in keys.items():
        key = key.reindex(t.index)
        frame = pd.DataFrame({"key": key, "split": t["split"], "id": t["id"]}).dropna(subset=["key"])
        spread = frame.groupby("key")["split"].nunique()
        for k in spread[spread > 1].index:
            members = frame[frame["key"] == k]
            problems.append(f"{name} {k!r} straddles splits: " + ", ".join(
                f"{i} ({s})" for i, s in zip(members["id"], members["split"], strict=True)))
    return problems


def assert_no_leakage(split: Split, extra_keys: dict[str, pd.Series] | None = None) -> None:
    problems = check_split_leakage(split, extra_keys)
    if problems:
        raise LeakageError("split leaks held-out images:\n  " + "\n  ".join(problems[:20]))


def held_out_ids(split: Split) -> set[str]:
    return set(split.table.loc[split.table["split"].isin(HELD_OUT), "id"])


def refuse_held_out(rows: pd.DataFrame, split: Split, purpose: str) -> None:
    """Raise LeakageError when any of ``rows`` (by id) is a validation or test image.

    The one guard every path to a generator goes through (references, fine-tuning images);
    it checks ids against the split itself, never a label the caller could have set.
    """
    held = held_out_ids(split)
    bad = [i for i in rows["id"].astype(str) if i in held]
    if bad:
        raise LeakageError(f"{purpose} refused: {len(bad)} image(s) are validation/test images "
                           f"(e.g. {bad[0]!r}); use training-pool images only")
