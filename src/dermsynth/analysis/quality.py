"""Fidelity and diversity of synthetic images: FID, KID, precision/recall, on any encoder.

ImageNet Inception judges skin photographs poorly, so the encoder is the caller's choice
(CLIP by default). FID is the Fréchet distance of Gaussian fits; KID the unbiased squared
MMD with the cubic polynomial kernel; precision/recall the k-NN manifold estimates of
Kynkäänniemi et al. (2019). Samples of tens of images give a warning (FID is biased, KID
noisy) and a KID estimate below zero is reported as 0 with a warning — never a crash.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg

from dermsynth.errors import StatisticsError

SMALL_SAMPLE = 50


def fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(np.atleast_2d(s1) @ np.atleast_2d(s2), disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 20, subset_size: int = 200, seed: int = 0) -> float:
    """Unbiased MMD² with k(x, y) = (x·y / d + 1)³, averaged over random subsets."""
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise StatisticsError("KID needs at least 2 images on each side")
    vals = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy.mean())
    return float(np.mean(vals))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, block: int = 1024) -> tuple[float, float]:
    """Share of fake samples inside the real k-NN manifold (precision) and vice versa (recall).

    Distances come from scipy's cdist in blocks of rows, so memory is block × N, not the
    N × N × d broadcast (2,000 images × 512-d would need 16 GB that way).
    """
    from scipy.spatial.distance import cdist

    def radii(x):
        kk = min(k, len(x) - 1)
        return np.concatenate([np.partition(cdist(x[i:i + block], x), kk, axis=1)[:, kk]
                               for i in range(0, len(x), block)])

    def covered(src, src_r, q):
        hits = [(cdist(q[i:i + block], src) <= src_r[None]).any(1) for i in range(0, len(q), block)]
        return float(np.concatenate(hits).mean()) if hits else float("nan")

    return covered(real, radii(real), fake), covered(fake, radii(fake), real)


@dataclass
class QualityRow:
    group: str
    n_real: int
    n_synthetic: int
    fid: float
    kid: float
    precision: float
    recall: float
    fid_ci: tuple[float, float]
    kid_ci: tuple[float, float]
    warning: str = ""


def quality(real: np.ndarray, fake: np.ndarray, group: str = "all", reps: int = 50, seed: int = 0) -> QualityRow:
    """All metrics with bootstrap CIs (resampling both sides)."""
    note = ""
    if min(len(real), len(fake)) < SMALL_SAMPLE:
        note = (f"small sample ({len(real)} real, {len(fake)} synthetic < {SMALL_SAMPLE}): FID is biased upwards "
                "and KID is noisy; compare only like with like")
        warnings.warn(f"{group}: {note}", stacklevel=2)
    k_raw = kid(real, fake, seed=seed)
    if k_raw < 0:
        note = (note + "; " if note else "") + f"KID estimate {k_raw:.2e} < 0 reported as 0 (sampling noise)"
    rng = np.random.default_rng(seed)
    fids, kids = [], []
    for _ in range(reps):
        r = real[rng.integers(0, len(real), len(real))]
        f = fake[rng.integers(0, len(fake), len(fake))]
        fids.append(fid(r, f))
        kids.append(max(0.0, kid(r, f, subsets=5, seed=int(rng.integers(1 << 30)))))
    p, rc = precision_recall(real, fake)
    return QualityRow(group, len(real), len(fake), fid(real, fake), max(0.0, k_raw), p, rc,
                      (float(np.quantile(fids, 0.025)), float(np.quantile(fids, 0.975))),
                      (float(np.quantile(kids, 0.025)), float(np.quantile(kids, 0.975))), note)


def quality_table(real_emb: np.ndarray, real_labels, syn_emb: np.ndarray, syn_labels, syn_methods,
                  reps: int = 50) -> pd.DataFrame:
    """Metrics per method and per (method, class) (with a bar over the groups when bars are on: each
    bootstraps ``reps`` times — minutes at study scale)."""
    from dermsynth.progress import progress_bar

    real_labels, syn_labels, syn_methods = map(np.asarray, (real_labels, syn_labels, syn_methods))
    groups = [(m, None) for m in sorted(set(syn_methods))]
    groups = [g for m, _ in groups for g in [(m, None)] + [(m, c) for c in sorted(set(syn_labels[syn_methods == m]))]]
    rows = []
    with warnings.catch_warnings():  # one summary below instead of one warning per (method, class)
        warnings.filterwarnings("ignore", message=".*small sample")
        for method, c in progress_bar(groups, desc="quality (FID, KID, precision/recall)"):
            sel = syn_methods == method
            if c is None:
                rows.append(quality(real_emb, syn_emb[sel], f"{method} / all", reps))
                continue
            r, f = real_emb[real_labels == c], syn_emb[sel & (syn_labels == c)]
            if len(r) >= 2 and len(f) >= 2:
                rows.append(quality(r, f, f"{method} / {c}", reps))
    small = [r.group for r in rows if "small sample" in r.warning]
    if small:
        warnings.warn(f"{len(small)} of {len(rows)} groups have small samples (< {SMALL_SAMPLE} images on a side, "
                      f"e.g. {small[0]}): FID is biased upwards and KID is noisy there; compare only like with like "
                      "(each row's warning says so)", stacklevel=2)
    return pd.DataFrame([r.__dict__ for r in rows])
