"""Connected components of "these images belong together" links (patients, duplicates).

Why one place: split groups (a patient's photos, a duplicate cluster) and duplicate
clusters are the same computation; scipy's connected components does it in C.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def components(n: int, a, b) -> np.ndarray:
    """Component label (0 … k-1) of each of ``n`` nodes, given edges ``a[i]`` – ``b[i]``."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def edges_by_key(keys) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking every row with a non-missing key to the first row with that key."""
    first: dict = {}
    a, b = [], []
    for i, key in enumerate(keys):
        if pd.isna(key):
            continue
        if key in first:
            a.append(first[key])
            b.append(i)
        else:
            first[key] = i
    return np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)

