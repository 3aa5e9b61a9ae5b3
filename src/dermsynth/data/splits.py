"""Leakage-proof splits: held-out test and validation, nested training subsets.

The protocol of the paper: per class (or per skin-type group for DDI) a fixed number of
test and validation images, the rest a training pool from which nested subsets of
``n_real`` images per class are drawn for each seed (the 16-subset lies inside the
32-subset). Images of one patient, and exact or near duplicates, form a *group* that never
straddles two splits. The test/validation split is fixed by ``split_seed`` so every run
is scored on the same images (the paper's proportion tests assume that).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermsynth.errors import LeakageError, SplitError

HELD_OUT = ("val", "test")


@dataclass
class Split:
    """An image table with a ``split`` column (test / val / pool) and a ``group`` column."""

    table: pd.DataFrame
    split_seed: int = 0

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
                raise SplitError(
                    f"class {label!r} has {len(rows)} training-pool images but n_real={n_real} "
                    f"was asked; lower n_real to ≤ {len(rows)} or reduce the test/val sizes")
            parts.append(rows.loc[_seeded_order(rows["id"], seed)].iloc[:n_real])
        return pd.concat(parts).reset_index(drop=True)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        self.table.to_parquet(tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Split:
        return cls(pd.read_parquet(path))


def _seeded_order(ids: pd.Series, seed: int) -> pd.Index:
    """A per-seed random order that does not depend on the table's row order."""
    keys = [hash_unit(f"{seed}:{i}") for i in ids]
    return ids.index[np.argsort(keys, kind="stable")]


def hash_unit(text: str) -> float:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def assign_groups(table: pd.DataFrame, duplicate_groups: pd.Series | None = None) -> pd.Series:
    """Group ids: images of one patient or one duplicate cluster share a group (union-find)."""
    parent = {i: i for i in table["id"]}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union_by(keys: pd.Series):
        first: dict = {}
        for img, key in zip(table["id"], keys, strict=True):
            if key is None or pd.isna(key):
                continue
            if key in first:
                parent[find(img)] = find(first[key])
            else:
                first[key] = img

    union_by(table["patient"])
    if duplicate_groups is not None:
        union_by(duplicate_groups.reindex(table.index))
    roots = pd.Series([find(i) for i in table["id"]], index=table.index)
    # name each group by its smallest member so ids do not depend on row order
    canonical = pd.Series(table["id"].to_numpy(), index=table.index).groupby(roots).transform("min")
    return canonical


def make_split(table: pd.DataFrame, n_test: int = 40, n_val: int = 40, split_seed: int = 0,
               stratify: str = "label", duplicate_groups: pd.Series | None = None) -> Split:
    """Assign whole groups to test, then validation, until each stratum has its quota.

    ``stratify`` is ``label`` (per-class quotas, F17k-9) or ``skin_group`` (DDI: e.g.
    32 test images per skin-type group). Raises SplitError naming the stratum that has
    too few images.
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
                f"+ at least 1 training image are needed — lower n_test/n_val or drop the class")
    table["split"] = "pool"
    groups = table.groupby("group", sort=False)
    order = sorted(groups.groups, key=lambda g: hash_unit(f"split{split_seed}:{g}"))
    for name, quota in (("test", n_test), ("val", n_val)):
        need = {s: quota for s in counts.index}
        for g in order:
            idx = groups.groups[g]
            if (table.loc[idx, "split"] != "pool").any():
                continue
            per = table.loc[idx, stratify].value_counts()
            if all(need[s] >= k for s, k in per.items()) and any(need[s] > 0 for s in per.index):
                table.loc[idx, "split"] = name
                for s, k in per.items():
                    need[s] -= k
            if not any(need.values()):
                break
        short = {s: k for s, k in need.items() if k > 0}
        if short:
            raise SplitError(f"could not fill the {name} quota for {short} without splitting a "
                             "patient or duplicate group; lower the quota")
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
