"""The image table: one pandas DataFrame schema that every dataset loader returns.

Keeping one schema means splits, caching, generation and training never need to know
which dataset an image came from.
"""

from __future__ import annotations

import pandas as pd

from dermsynth.errors import DermsynthError

COLUMNS = ["id", "path", "label", "skin_type", "skin_group", "patient", "source"]
SKIN_GROUPS = ["I-II", "III-IV", "V-VI"]


def skin_group_of(skin_type: float | int | None) -> str | None:
    """Map a Fitzpatrick skin type 1–6 to the paper's groups I-II, III-IV, V-VI."""
    if skin_type is None or pd.isna(skin_type):
        return None
    t = int(skin_type)
    if t < 1 or t > 6:
        return None
    return SKIN_GROUPS[(t - 1) // 2]


def make_table(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Normalise a loader's frame to the common schema (extra columns are kept)."""
    df = df.copy()
    for col in ("id", "path", "label"):
        if col not in df.columns:
            raise DermsynthError(f"image table from {source!r} lacks the required column {col!r}")
    if "skin_type" not in df.columns:
        df["skin_type"] = pd.NA
    st = pd.to_numeric(df["skin_type"], errors="coerce")
    st = st.where((st >= 1) & (st <= 6))
    df["skin_type"] = st.astype("Int64")
    if "skin_group" not in df.columns:
        df["skin_group"] = [skin_group_of(t) for t in df["skin_type"]]
    if "patient" not in df.columns:
        df["patient"] = pd.NA
    df["source"] = source
    df["id"] = df["id"].astype(str)
    df["path"] = df["path"].astype(str)
    df["label"] = df["label"].astype(str)
    if df["id"].duplicated().any():
        dup = df.loc[df["id"].duplicated(), "id"].iloc[0]
        raise DermsynthError(f"image table from {source!r} has duplicate id {dup!r}; ids must be unique")
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra].reset_index(drop=True)
