"""Fig. 2's numbers: cosine distances between real and synthetic embeddings, and 2-D projections.

As the paper: the mean cosine distance of real–real pairs (paper 0.242), of real–synthetic pairs
(0.241, in-then-outpaint images) and of each synthetic image to its own reference (0.0844). The
"own reference" distance exists only for methods that keep a reference's pixels or layout
(inpaint, outpaint, in-then-outpaint); a text-to-image image's ``ref_id`` only says which real
image it is counted for, so it has none.

The tests compare images, not pairs: random pairs share images (one image in many pairs), so a
t-test over thousands of pairs treats one image's distances as independent observations
(pseudo-replication) and its p-values are far too small. Each real image contributes one value
(its mean distance to the other real images); each reference contributes one value per distance
(its synthetic images' mean distance to the real images, and to it). Welch's two-sample t-test on
these per-image means, Benjamini–Hochberg adjusted over every comparison of the study.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dermsynth.errors import ConfigError, DataError
from dermsynth.stats import bh_adjust

# Methods whose images are made from a reference image (a masked region is generated around it).
REFERENCE_METHODS = ("inpaint", "outpaint", "in-then-outpaint")
# The method the paper's Fig. 2C measured.
PAPER_METHOD = "in-then-outpaint"
REAL_REAL, REAL_SYN, OWN_REF = "real-real", "real-synthetic", "synthetic-own-reference"


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1.0 - np.sum(a * b, axis=1)


def has_reference(method: str) -> bool:
    return method in REFERENCE_METHODS


@dataclass
class DistanceAnalysis:
    """Per-image mean distances of one method's synthetic images (see the module docstring)."""

    method: str
    real_real: np.ndarray  # one per real image
    real_synthetic: np.ndarray  # one per reference: its synthetic images' mean distance to the real images
    synthetic_reference: np.ndarray  # one per reference (empty for text-to-image)

    def means(self) -> dict[str, float]:
        out = {REAL_REAL: float(self.real_real.mean()), REAL_SYN: float(self.real_synthetic.mean())}
        if len(self.synthetic_reference):
            out[OWN_REF] = float(self.synthetic_reference.mean())
        return out

    def samples(self) -> dict[str, np.ndarray]:
        out = {REAL_REAL: self.real_real, REAL_SYN: self.real_synthetic}
        if len(self.synthetic_reference):
            out[OWN_REF] = self.synthetic_reference
        return out


def distance_analysis(real_emb: np.ndarray, real_ids: list[str], syn_emb: np.ndarray, syn_ref_ids: list[str],
                      method: str) -> DistanceAnalysis:
    """Per-image mean cosine distances for one method's synthetic images (L2-normalised embeddings)."""
    if len(real_emb) < 2 or len(syn_emb) < 1:
        raise DataError(f"the distance analysis of {method} needs ≥ 2 real and ≥ 1 synthetic images")
    rr = real_emb @ real_emb.T
    n = len(real_emb)
    real_real = 1.0 - (rr.sum(1) - np.diag(rr)) / (n - 1)  # each real image vs every other one
    to_real = 1.0 - (syn_emb @ real_emb.T).mean(1)  # each synthetic image vs every real image
    refs = pd.Series(syn_ref_ids).astype(str)
    real_synthetic = pd.Series(to_real).groupby(refs.to_numpy()).mean().to_numpy()
    own = np.array([])
    if has_reference(method):
        pos = {str(r): i for i, r in enumerate(real_ids)}
        known = refs.isin(pos).to_numpy()
        if known.any():
            d = cosine_distance(syn_emb[known], real_emb[[pos[r] for r in refs[known]]])
            own = pd.Series(d).groupby(refs[known].to_numpy()).mean().to_numpy()
    return DistanceAnalysis(method, real_real, real_synthetic, own)


COMPARISONS = ((REAL_REAL, REAL_SYN), (REAL_REAL, OWN_REF), (REAL_SYN, OWN_REF))


def distance_tests(analyses: list[DistanceAnalysis]) -> pd.DataFrame:
    """Welch's t-test on per-image means for each pair of distances of each method; BH over all rows."""
    rows = []
    for a in analyses:
        samples = a.samples()
        for x_name, y_name in COMPARISONS:
            if x_name not in samples or y_name not in samples:
                continue
            x, y = samples[x_name], samples[y_name]
            if len(x) < 2 or len(y) < 2:
                continue
            t = stats.ttest_ind(x, y, equal_var=False)
            rows.append({"method": a.method, "comparison": f"{x_name} vs {y_name}", "mean_a": float(x.mean()),
                         "mean_b": float(y.mean()), "n_a": len(x), "n_b": len(y), "unit": "image",
                         "t": float(t.statistic), "p_value": float(t.pvalue)})
    tests = pd.DataFrame(rows)
    if len(tests):
        tests["p_bh"] = bh_adjust(tests["p_value"])
    return tests


def headline_method(methods: list[str]) -> str:
    """The method Fig. 2C reports: the paper's in-then-outpaint when present, else one with a reference."""
    if PAPER_METHOD in methods:
        return PAPER_METHOD
    with_ref = [m for m in methods if has_reference(m)]
    return sorted(with_ref or methods)[0]


def projections(emb: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D projection by PCA or UMAP (umap-learn)."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(emb)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ConfigError("UMAP needs umap-learn: pip install 'dermsynth[umap]'") from None
        with warnings.catch_warnings():  # "n_jobs value 1 overridden to 1 by setting random_state": seeded on purpose
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            return umap.UMAP(n_components=2, random_state=seed,
                             n_neighbors=min(15, len(emb) - 1)).fit_transform(emb)
    raise ConfigError(f"projection {method!r}; choose pca or umap")
