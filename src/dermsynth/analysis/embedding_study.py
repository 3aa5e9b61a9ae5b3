"""Studies of a synthetic store against its real data: Fig. 2 (embeddings) and quality.

Each function reads a split and a store, writes its tables/figures under ``out`` and
returns the key numbers, so the CLI, the experiment report and notebooks share one path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from PIL import Image

from dermsynth import files
from dermsynth.analysis.distances import distance_analysis, distance_tests, headline_method, projections
from dermsynth.analysis.figures import OKABE_ITO
from dermsynth.analysis.quality import quality_table
from dermsynth.data.cache import embed_table
from dermsynth.data.splits import Split
from dermsynth.data.synthetic_store import read_manifest
from dermsynth.errors import DataError
from dermsynth.models.encoders import Encoder

log = logging.getLogger(__name__)

# UMAP needs a neighbourhood: below this many points it is not drawn (and the reason recorded).
MIN_UMAP_POINTS = 20


def _syn_table(store) -> pd.DataFrame:
    man = read_manifest(store)
    return man.assign(id=man["synth_id"])


def sample_by_reference(syn: pd.DataFrame, max_synthetic: int, seed: int) -> pd.DataFrame:
    """At most ``max_synthetic`` images per method, drawn as whole references (a reference's
    images are one unit in the tests, so a unit is never cut in part)."""
    parts = []
    for _, rows in syn.groupby("method", sort=True):
        refs = rows["ref_id"].drop_duplicates().sample(frac=1.0, random_state=seed)
        sizes = rows.groupby("ref_id").size().reindex(refs)
        within = (sizes.cumsum() <= max_synthetic).to_numpy().copy()
        within[0] = True  # at least one reference, even when it alone has more images
        keep = refs[within] if len(rows) > max_synthetic else refs
        parts.append(rows[rows["ref_id"].isin(set(keep))])
    return pd.concat(parts).reset_index(drop=True) if parts else syn


def embedding_study(split: Split, store, encoder: Encoder, out: str | Path, max_synthetic: int = 2000,
                    umap: bool = True, cache_dir: str = ".dermsynth-cache", seed: int = 0) -> dict:
    """Fig. 2: projections coloured by condition and by real/synthetic, thumbnails, distances.

    Distances per method (distances.py); the headline numbers are the paper's method
    (in-then-outpaint) when the store has it. Tests compare per-image means, BH over all rows.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    real = split.pool.reset_index(drop=True)
    syn = sample_by_reference(_syn_table(store), max_synthetic, seed)
    if syn.empty:
        raise DataError(f"{store} holds no synthetic image to compare with the real ones")
    re, se = embed_table(real, encoder, cache_dir), embed_table(syn, encoder, cache_dir)
    methods = sorted(syn["method"].unique())
    analyses = []
    for method in methods:
        mine = (syn["method"] == method).to_numpy()
        analyses.append(distance_analysis(re, list(real["id"]), se[mine], list(syn.loc[mine, "ref_id"]), method))
    tests = distance_tests(analyses)
    tests.to_csv(out / "distance_tests.csv", index=False)
    head = headline_method(methods)
    main = analyses[methods.index(head)]
    emb = np.concatenate([re, se])
    labels = list(real["label"]) + list(syn["label"])
    kinds = ["real"] * len(re) + ["synthetic"] * len(se)
    paths = list(real["path"]) + list(syn["path"])
    figs = {}
    for method in ("pca", "umap") if umap else ("pca",):
        if method == "umap" and len(emb) < MIN_UMAP_POINTS:
            figs[method] = f"skipped: {len(emb)} images, UMAP needs ≥ {MIN_UMAP_POINTS}"
            log.warning("UMAP %s", figs[method])
            continue
        xy = projections(emb, method, seed)
        figs[method] = str(_projection_figure(xy, labels, kinds, paths, out / f"fig2_{method}.png", method, seed))
    hist = out / "fig2_distances.png"
    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    for (name, vals), col in zip(main.samples().items(), OKABE_ITO[1:], strict=False):
        ax.hist(vals, bins=40, alpha=0.55, color=col, label=f"{name} (mean {vals.mean():.3f}, n = {len(vals)})",
                density=True)
    ax.set_xlabel(f"mean cosine distance per image ({encoder.name}; synthetic: {head})")
    ax.legend(fontsize=7)
    fig.savefig(hist, dpi=150, bbox_inches="tight")
    result = {"encoder": encoder.name, "n_real": len(re), "n_synthetic": len(se), "method": head,
              "means": main.means(), "means_by_method": {a.method: a.means() for a in analyses},
              "tests": tests.to_dict(orient="records"), "figures": {**figs, "distances": str(hist)},
              "test_note": "Welch t-test on per-image means (one value per real image or reference), BH over "
                           "all rows; the own-reference distance only for methods made from a reference",
              "paper_means": {"real-real": 0.242, "real-synthetic": 0.241, "synthetic-own-reference": 0.0844}}
    files.write_json(out / "embedding.json", result)
    return result


def _projection_figure(xy, labels, kinds, paths, path: Path, method: str, seed: int, thumbs: int = 12) -> Path:
    classes = sorted(set(labels))
    fig = Figure(figsize=(11, 4.6))
    axes = fig.subplots(1, 2)
    lab = np.array(labels)
    kind = np.array(kinds)
    for i, c in enumerate(classes):
        m = lab == c
        axes[0].scatter(xy[m, 0], xy[m, 1], s=6, color=OKABE_ITO[i % 8], marker="os^"[i // 8 % 3], label=c, alpha=0.7)
    for k, col in (("real", OKABE_ITO[5]), ("synthetic", OKABE_ITO[6])):
        m = kind == k
        axes[1].scatter(xy[m, 0], xy[m, 1], s=6, color=col, label=k, alpha=0.6)
    rng = np.random.default_rng(seed)
    for j in rng.choice(len(xy), min(thumbs, len(xy)), replace=False):
        img = np.asarray(Image.open(paths[j]).convert("RGB").resize((28, 28)))
        axes[0].add_artist(AnnotationBbox(OffsetImage(img, zoom=1.0), xy[j], frameon=True, pad=0.1))
    axes[0].legend(fontsize=6, markerscale=2, loc="best")
    axes[1].legend(fontsize=8, markerscale=2)
    axes[0].set_title(f"{method.upper()} by condition (thumbnails: random images)")
    axes[1].set_title(f"{method.upper()} real vs synthetic")
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def quality_study(split: Split, store, encoder: Encoder, out: str | Path, reps: int = 50,
                  cache_dir: str = ".dermsynth-cache") -> pd.DataFrame:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    real, syn = split.pool.reset_index(drop=True), _syn_table(store)
    log.info("quality: %d real (training pool) and %d synthetic images, encoder %s", len(real), len(syn), encoder.name)
    table = quality_table(embed_table(real, encoder, cache_dir), real["label"],
                          embed_table(syn, encoder, cache_dir), syn["label"], syn["method"], reps)
    table.to_csv(out / "quality.csv", index=False)
    return table
