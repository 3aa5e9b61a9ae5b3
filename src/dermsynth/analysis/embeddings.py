"""Image embeddings and the paper's Fig. 2 analysis.

Encoders: CLIP ViT-B/32's image encoder (``openai/clip-vit-base-patch32`` through
transformers: 512-d, L2-normalised) by default, any timm model, or raw pixels (a
"pixel space" for copy detection). Hub id or local folder; tests use a tiny random CLIP.
Embeddings are cached per (image content, encoder), so re-analyses are cheap.

Fig. 2 numbers: mean cosine distance of random real–real pairs (paper 0.242), random
real–synthetic pairs (0.241) and each synthetic image vs its own reference (0.0844), with
two-sample t-tests adjusted by Benjamini–Hochberg.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from dermsynth.analysis.stats import bh_adjust
from dermsynth.data.cache import cache_images
from dermsynth.errors import DermsynthError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Encoder:
    """A function from uint8 images (N, S, S, 3) to L2-normalised embeddings, with its input size."""

    name: str
    size: int
    fn: object
    fingerprint: str

    def __call__(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        out = [self.fn(images[i:i + batch]) for i in range(0, len(images), batch)]
        emb = np.concatenate(out) if out else np.zeros((0, 1), np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def _to_tensor(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def clip_encoder(model: str = "openai/clip-vit-base-patch32") -> Encoder:
    from transformers import CLIPVisionModelWithProjection

    local = Path(model).exists()
    try:
        net = CLIPVisionModelWithProjection.from_pretrained(model, local_files_only=local).eval()
    except OSError as exc:
        raise DermsynthError(f"could not load the CLIP image encoder {model!r} ({str(exc)[:160]}); without internet "
                             "download it elsewhere and pass the folder (--encoder clip:/path)") from None
    size = int(net.config.image_size)

    @torch.no_grad()
    def fn(images):
        return net(pixel_values=_to_tensor(images, CLIP_MEAN, CLIP_STD)).image_embeds.float().numpy()

    return Encoder(f"clip:{model}", size, fn, hashlib.sha1(f"clip:{model}".encode()).hexdigest()[:12])


def timm_encoder(name: str, pretrained: bool = True, pretrained_path: str | None = None, size: int = 224) -> Encoder:
    from dermsynth.train.backbones import create_backbone

    net = create_backbone(name, 0, pretrained, pretrained_path).eval()
    cfg = net.pretrained_cfg

    @torch.no_grad()
    def fn(images):
        return net(_to_tensor(images, cfg.get("mean", CLIP_MEAN), cfg.get("std", CLIP_STD))).float().numpy()

    return Encoder(f"timm:{name}", size, fn, hashlib.sha1(f"timm:{name}:{pretrained_path}".encode()).hexdigest()[:12])


def pixel_encoder(size: int = 16) -> Encoder:
    """Down-sampled, mean-centred pixels: near-copies are close, honest samples are not."""
    def fn(images):
        x = images.reshape(len(images), -1).astype(np.float32) / 255.0
        return x - x.mean(1, keepdims=True)

    return Encoder(f"pixels:{size}", size, fn, f"pixels{size}")


def make_encoder(spec: str) -> Encoder:
    """``clip`` / ``clip:PATH_OR_ID`` / ``timm:NAME`` / ``pixels``."""
    kind, _, arg = spec.partition(":")
    if kind == "clip":
        return clip_encoder(arg or "openai/clip-vit-base-patch32")
    if kind == "timm":
        return timm_encoder(arg or "resnet50")
    if kind == "pixels":
        return pixel_encoder(int(arg) if arg else 16)
    raise DermsynthError(f"encoder {spec!r}; use clip[:PATH], timm:NAME or pixels[:SIZE]")


def embed_table(table: pd.DataFrame, encoder: Encoder, cache_dir: str | Path = ".dermsynth-cache") -> np.ndarray:
    """Embeddings of a table's images (rows in table order), cached per image content."""
    cached = cache_images(table, encoder.size, Path(cache_dir) / "images", progress=False)
    return encoder(cached.array)


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
        raise DermsynthError("the distance analysis needs ≥ 2 real and ≥ 1 synthetic images")
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
            raise DermsynthError("UMAP needs umap-learn: pip install 'dermsynth[umap]'") from None
        return umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(emb) - 1)).fit_transform(emb)
    raise DermsynthError(f"projection {method!r}; choose pca or umap")
