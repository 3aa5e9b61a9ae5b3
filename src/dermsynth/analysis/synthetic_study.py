"""Studies of a synthetic store against its real data: Fig. 2, quality, memorization.

Each function reads a split and a store, writes its tables/figures under ``out`` and
returns the key numbers, so the CLI, the experiment report and notebooks share one path.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.offsetbox import AnnotationBbox, OffsetImage  # noqa: E402
from PIL import Image  # noqa: E402

from dermsynth.analysis.embeddings import Encoder, distance_analysis, embed_table, pixel_encoder, projections  # noqa: E402
from dermsynth.analysis.figures import OKABE_ITO  # noqa: E402
from dermsynth.analysis.memorization import audit_memorization  # noqa: E402
from dermsynth.analysis.quality import quality_table  # noqa: E402
from dermsynth.data.splits import Split  # noqa: E402
from dermsynth.generate.store import read_manifest  # noqa: E402


def _syn_table(store) -> pd.DataFrame:
    man = read_manifest(store)
    return man.assign(id=man["synth_id"])


def embedding_study(split: Split, store, encoder: Encoder, out: str | Path, max_synthetic: int = 2000,
                    umap: bool = True, cache_dir: str = ".dermsynth-cache", seed: int = 0) -> dict:
    """Fig. 2: projections coloured by condition and by real/synthetic, thumbnails, distances."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    real = split.pool.reset_index(drop=True)
    syn = _syn_table(store)
    if len(syn) > max_synthetic:
        syn = syn.sample(max_synthetic, random_state=seed).reset_index(drop=True)
    re, se = embed_table(real, encoder, cache_dir), embed_table(syn, encoder, cache_dir)
    dist = distance_analysis(re, list(real["id"]), se, list(syn["ref_id"]), seed=seed)
    dist.tests.to_csv(out / "distance_tests.csv", index=False)
    emb = np.concatenate([re, se])
    labels = list(real["label"]) + list(syn["label"])
    kinds = ["real"] * len(re) + ["synthetic"] * len(se)
    paths = list(real["path"]) + list(syn["path"])
    figs = {}
    for method in ("pca", "umap") if umap else ("pca",):
        try:
            xy = projections(emb, method, seed)
        except Exception as exc:  # UMAP on tiny samples can fail; PCA always works
            figs[method] = f"skipped: {exc}"
            continue
        figs[method] = str(_projection_figure(xy, labels, kinds, paths, out / f"fig2_{method}.png", method, seed))
    hist = out / "fig2_distances.png"
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for (name, vals), col in zip(((k, v) for k, v in (("real–real", dist.real_real), ("real–synthetic",
                                 dist.real_synthetic), ("synthetic–own reference", dist.synthetic_reference))
                                  if len(v)), OKABE_ITO[1:], strict=False):
        ax.hist(vals, bins=40, alpha=0.55, color=col, label=f"{name} (mean {vals.mean():.3f})", density=True)
    ax.set_xlabel(f"cosine distance ({encoder.name})")
    ax.legend(fontsize=7)
    fig.savefig(hist, dpi=150, bbox_inches="tight")
    plt.close(fig)
    result = {"encoder": encoder.name, "n_real": len(re), "n_synthetic": len(se), "means": dist.means(),
              "tests": dist.tests.to_dict(orient="records"), "figures": {**figs, "distances": str(hist)},
              "paper_means": {"real-real": 0.242, "real-synthetic": 0.241, "synthetic-own-reference": 0.0844}}
    (out / "embedding.json").write_text(json.dumps(result, indent=2))
    return result


def _projection_figure(xy, labels, kinds, paths, path: Path, method: str, seed: int, thumbs: int = 12) -> Path:
    classes = sorted(set(labels))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
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
    plt.close(fig)
    return path


def quality_study(split: Split, store, encoder: Encoder, out: str | Path, reps: int = 50,
                  cache_dir: str = ".dermsynth-cache") -> pd.DataFrame:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    real, syn = split.pool.reset_index(drop=True), _syn_table(store)
    table = quality_table(embed_table(real, encoder, cache_dir), real["label"], embed_table(syn, encoder, cache_dir),
                          syn["label"], syn["method"], reps)
    table.to_csv(out / "quality.csv", index=False)
    return table


def memorization_study(split: Split, store, encoder: Encoder | None, out: str | Path, quantile: float = 0.01,
                       cache_dir: str = ".dermsynth-cache") -> pd.DataFrame:
    """Nearest real neighbours (training pool and held-out) of every synthetic image; flags copies."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train = split.pool.reset_index(drop=True)
    held = split.table[split.table["split"] != "pool"].reset_index(drop=True)
    syn = _syn_table(store)
    spaces = {}
    for enc in [e for e in (encoder, pixel_encoder(16)) if e is not None]:
        key = enc.name.split(":")[0]
        spaces[key] = (embed_table(syn, enc, cache_dir), embed_table(train, enc, cache_dir),
                       embed_table(held, enc, cache_dir))
    rep = audit_memorization(syn, spaces, list(train["id"]), list(held["id"]), quantile)
    rep.table.to_csv(out / "memorization.csv", index=False)
    (out / "memorization.json").write_text(json.dumps({"thresholds": rep.thresholds, "flagged": int(rep.table[
        "flagged"].sum()), "n_synthetic": len(rep.table)}, indent=2))
    return rep.table
