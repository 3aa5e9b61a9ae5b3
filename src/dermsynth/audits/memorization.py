"""Memorization audit: which synthetic images copy a real training or test image?

For every synthetic image, its nearest real neighbours among the training pool and among
validation+test, in an embedding space (default CLIP) and in pixel space. The threshold is
calibrated on real data: the ``quantile`` (default 1 %) of real-to-nearest-other-real
distances in the training pool — a synthetic image closer to a real one than almost any two
real images are to each other is flagged. Masked methods keep part of their reference by
design, so a nearest neighbour that *is* the image's own reference is not a flag for them;
a near-copy of a validation/test image always is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermsynth import files
from dermsynth.data.cache import embed_table
from dermsynth.data.splits import Split
from dermsynth.data.synthetic_store import read_manifest
from dermsynth.models.encoders import Encoder, pixel_encoder

MASKED = {"inpaint", "outpaint", "in-then-outpaint"}


def nearest(query: np.ndarray, base: np.ndarray, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Index and cosine distance of each query's nearest neighbour in ``base`` (rows L2-normalised)."""
    if len(base) == 0:
        return np.full(len(query), -1), np.full(len(query), np.inf)
    sims = query @ base.T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    idx = sims.argmax(1)
    return idx, 1.0 - sims[np.arange(len(query)), idx]


def calibrate(train_emb: np.ndarray, quantile: float = 0.01) -> float:
    """Distance below which two images count as copies: a low quantile of real NN distances."""
    _, d = nearest(train_emb, train_emb, exclude_self=True)
    return float(np.quantile(d, quantile))


@dataclass
class MemorizationReport:
    table: pd.DataFrame  # one row per synthetic image
    thresholds: dict[str, float]

    @property
    def flagged(self) -> pd.DataFrame:
        return self.table[self.table["flagged"]]


def audit_memorization(syn: pd.DataFrame, spaces: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                       train_ids: list[str], heldout_ids: list[str], quantile: float = 0.01) -> MemorizationReport:
    """``spaces``: name → (synthetic emb, training-pool emb, held-out emb), rows aligned with the ids."""
    out = syn[["synth_id", "ref_id", "method", "label"]].reset_index(drop=True).copy()
    flag = np.zeros(len(out), bool)
    thresholds = {}
    for name, (s, tr, ho) in spaces.items():
        thr = calibrate(tr, quantile)
        thresholds[name] = thr
        ti, td = nearest(s, tr)
        hi, hd = nearest(s, ho)
        out[f"{name}_nearest_train"] = [train_ids[i] if i >= 0 else None for i in ti]
        out[f"{name}_train_distance"] = td
        out[f"{name}_nearest_heldout"] = [heldout_ids[i] if i >= 0 else None for i in hi]
        out[f"{name}_heldout_distance"] = hd
        own = (out[f"{name}_nearest_train"] == out["ref_id"]) & out["method"].isin(MASKED)
        flag |= ((td < thr) & ~own.to_numpy()) | (hd < thr)
    out["flagged"] = flag
    return MemorizationReport(out, thresholds)


def memorization_study(split: Split, store, encoder: Encoder | None, out: str | Path, quantile: float = 0.01,
                       cache_dir: str = ".dermsynth-cache") -> MemorizationReport:
    """Nearest real neighbours (training pool and held-out) of every synthetic image; flags copies.

    Searched in ``encoder``'s space and always in pixel space. Writes ``memorization.csv``
    and ``memorization.json`` under ``out``.
    """
    out = Path(out)
    train = split.pool.reset_index(drop=True)
    held = split.table[split.table["split"] != "pool"].reset_index(drop=True)
    man = read_manifest(store)
    syn = man.assign(id=man["synth_id"])
    spaces = {}
    for enc in [e for e in (encoder, pixel_encoder(16)) if e is not None]:
        key = enc.name.split(":")[0]
        spaces[key] = (embed_table(syn, enc, cache_dir), embed_table(train, enc, cache_dir),
                       embed_table(held, enc, cache_dir))
    rep = audit_memorization(syn, spaces, list(train["id"]), list(held["id"]), quantile)
    out.mkdir(parents=True, exist_ok=True)
    rep.table.to_csv(out / "memorization.csv", index=False)
    summary = {"thresholds": rep.thresholds, "flagged": int(rep.table["flagged"].sum()), "n_synthetic": len(rep.table)}
    files.write_json(out / "memorization.json", summary)
    return rep
