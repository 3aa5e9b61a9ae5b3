"""Fig. 2's numbers: cosine distances between real and synthetic embeddings, and 2-D projections.

Mean cosine distance of random real–real pairs (paper 0.242), random real–synthetic pairs
(0.241) and each synthetic image vs its own reference (0.0844), with two-sample t-tests
adjusted by Benjamini–Hochberg.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dermsynth.analysis.stats import bh_adjust
from dermsynth.errors import ConfigError, DataError


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1.0 - np.sum(a * b, axis=1)


@dataclass
class DistanceAnalysis:
    real_real: np.ndarray
    real_synthetic: np.ndarray
    synthetic_reference: np.ndarray
    tests: pd.DataFrame

    def means(self) -> dict[str, float]:
        return {"real-real": float(self.real_real.mean()), "real-synthetic": float(self.real_synthetic.mean()),
                "synthetic-own-reference": float(self.synthetic_reference.mean())}


def distance_analysis(real_emb: np.ndarray, real_ids: list[str], syn_emb: np.ndarray, syn_ref_ids: list[str],
                      n_pairs: int = 2000, seed: int = 0) -> DistanceAnalysis:
    """Cosine distances of random real–real and real–synthetic pairs and synthetic vs own reference."""
    rng = np.random.default_rng(seed)
    if len(real_emb) < 2 or len(syn_emb) < 1:
        raise DataError("the distance analysis needs ≥ 2 real and ≥ 1 synthetic images")
    i, j = rng.integers(0, len(real_emb), n_pairs), rng.integers(0, len(real_emb), n_pairs)
    keep = i != j
    rr = cosine_distance(real_emb[i[keep]], real_emb[j[keep]])
    k, m = rng.integers(0, len(real_emb), n_pairs), rng.integers(0, len(syn_emb), n_pairs)
    rs = cosine_distance(real_emb[k], syn_emb[m])
    pos = {r: n for n, r in enumerate(real_ids)}
    own = [(n, pos[r]) for n, r in enumerate(syn_ref_ids) if r in pos]
    sr = cosine_distance(syn_emb[[a for a, _ in own]], real_emb[[b for _, b in own]]) if own else np.array([])
    rows = []
    for name, x, y in (("real-real vs real-synthetic", rr, rs), ("real-real vs synthetic-own-reference", rr, sr),
                       ("real-synthetic vs synthetic-own-reference", rs, sr)):
        if len(x) > 1 and len(y) > 1:
            t = stats.ttest_ind(x, y, equal_var=False)
            rows.append({"comparison": name, "mean_a": float(x.mean()), "mean_b": float(y.mean()),
                         "t": float(t.statistic), "p_value": float(t.pvalue)})
    tests = pd.DataFrame(rows)
    if len(tests):
        tests["p_bh"] = bh_adjust(tests["p_value"])
    return DistanceAnalysis(rr, rs, sr, tests)


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
        return umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(emb) - 1)).fit_transform(emb)
    raise ConfigError(f"projection {method!r}; choose pca or umap")
