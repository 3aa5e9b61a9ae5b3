"""A procedural dermatology-like data set: offline, deterministic, any size and resolution.

Why: tests, the quickstart and CPU-only users need a nine-class skin-condition task that
behaves like the real one (low-data regime, skin tones I–VI, overlapping appearances,
patients with several photos) without downloading anything. Each "condition" has its own
lesion morphology; pairs of conditions share traits (plaques, papules, nodules, diffuse
erythema) so that the task is neither trivial nor impossible, and nuisance variation
(texture, hair, lighting, white balance, blur, framing, noise) comes from the camera.

Images are rendered with numpy; image ``i`` of class ``c`` depends only on
``(seed, c, i)``, so a larger data set contains every image of a smaller one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from scipy.ndimage import zoom

from dermsynth.data.fitzpatrick import F17K9
from dermsynth.data.table import make_table
from dermsynth.files import atomic_path, write_json

# The conditions of the paper's F17k-9, so demo studies read like the real one.
DEMO_CLASSES = list(F17K9)

# Typical sRGB skin colours for Fitzpatrick types I..VI.
SKIN_RGB = np.array(
    [[241, 200, 172], [226, 174, 140], [199, 146, 108], [160, 110, 76], [112, 74, 50], [70, 46, 34]],
    dtype=np.float32,
)
SKIN_TYPE_WEIGHTS = np.array([0.18, 0.25, 0.2, 0.16, 0.12, 0.09])


@dataclass(frozen=True)
class DemoSpec:
    """What to render: images per class, resolution, seed."""

    n_per_class: int = 200
    size: int = 64
    seed: int = 0
    skin_weights: tuple[float, ...] | None = None

    def key(self) -> str:
        mix = "" if self.skin_weights is None else "-skin" + hashlib.sha1(
            repr(skin_probabilities(self.skin_weights).round(6).tolist()).encode()).hexdigest()[:8]
        return f"demo-s{self.seed}-px{self.size}{mix}"


def skin_probabilities(weights=None) -> np.ndarray:
    """The chance of each skin type I–VI for a patient: ``weights`` normalised, or the default."""
    return SKIN_TYPE_WEIGHTS if weights is None else np.asarray(weights, dtype=float) / float(sum(weights))


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) for p in parts])


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    out = zoom(coarse, size / cells, order=3)[:size, :size]
    return out / (out.std() + 1e-6)


def _blob(X, Y, cx, cy, r, rng, irregular=0.15, soft=0.15, aspect=1.0, angle=0.0):
    """Soft mask of an irregular ellipse; ``soft`` is the edge width relative to r."""
    dx, dy = X - cx, Y - cy
    ca, sa = np.cos(angle), np.sin(angle)
    u, v = dx * ca + dy * sa, (-dx * sa + dy * ca) * aspect
    theta = np.arctan2(v, u)
    pert = np.ones_like(theta)
    for k in range(2, 6):
        pert += irregular / k * rng.standard_normal() * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    d = np.sqrt(u**2 + v**2) / (r * np.clip(pert, 0.4, 2.0))
    return np.clip((1.0 - d) / max(soft, 1e-3) + 0.5, 0.0, 1.0)


def _blend(img, color, mask, alpha=1.0):
    m = (mask * alpha)[..., None]
    return img * (1 - m) + np.asarray(color, dtype=np.float32) * m


def _redden(skin, amount):
    """Erythema as it looks on this skin: pink-red on light skin, violaceous-brown on dark."""
    return skin * (1 - amount * np.array([0.05, 0.5, 0.42])) + amount * np.array([30.0, 0, 5.0])


class _Painter:
    """Draws one condition's lesions in lesion coordinates X, Y ∈ [-1, 1]."""

    def __init__(self, X, Y, skin, rng, size):
        self.X, self.Y, self.skin, self.rng, self.size = X, Y, skin, rng, size

    def speckle(self, density):
        n = self.rng.random(self.X.shape)
        return (n < density).astype(np.float32)

    def psoriasis(self, img):
        r = self.rng
        for _ in range(r.integers(1, 4)):
            m = _blob(self.X, self.Y, r.uniform(-0.5, 0.5), r.uniform(-0.5, 0.5), r.uniform(0.25, 0.55),
                      r, irregular=0.35, soft=0.08, aspect=r.uniform(0.7, 1.4), angle=r.uniform(0, 3.14))
            img = _blend(img, _redden(self.skin, r.uniform(0.55, 0.9)), m)
            scale = self.speckle(r.uniform(0.25, 0.5)) * m
            img = _blend(img, np.array([235, 232, 228]), scale, r.uniform(0.45, 0.8))
        return img

    def nodule(self, img, r0, color, shade=0.35):
        r = self.rng
        cx, cy, rad = r.uniform(-0.3, 0.3), r.uniform(-0.3, 0.3), r.uniform(*r0)
        m = _blob(self.X, self.Y, cx, cy, rad, r, irregular=0.2, soft=0.25)
        img = _blend(img, color, m)
        hl = np.exp(-(((self.X - cx + 0.35 * rad) ** 2 + (self.Y - cy + 0.35 * rad) ** 2) / (0.35 * rad) ** 2))
        img = img + shade * 60 * (hl * m)[..., None]
        return img, (cx, cy, rad, m)

    def scc(self, img):
        r = self.rng
        img, (cx, cy, rad, m) = self.nodule(img, (0.25, 0.45), _redden(self.skin, r.uniform(0.4, 0.7)))
        crust = _blob(self.X, self.Y, cx + r.uniform(-0.1, 0.1) * rad, cy, rad * r.uniform(0.35, 0.7), r,
                      irregular=0.5, soft=0.2)
        rough = 0.75 + 0.5 * self.rng.random(self.X.shape)
        color = np.array([150, 105, 55]) * rough[..., None]
        return _blend(img, color, crust, r.uniform(0.6, 0.95))

    def lichen_planus(self, img):
        r = self.rng
        violet = self.skin * np.array([0.72, 0.52, 0.78]) + np.array([25, 0, 35])
        for _ in range(r.integers(8, 30)):
            m = _blob(self.X, self.Y, r.uniform(-0.8, 0.8), r.uniform(-0.8, 0.8), r.uniform(0.04, 0.1), r,
                      irregular=0.4, soft=0.15)
            img = _blend(img, violet, m, r.uniform(0.6, 0.95))
        striae = self.speckle(0.04) * (img[..., 2] < self.skin[..., 2] - 5)
        return _blend(img, np.array([225, 225, 235]), striae, 0.5)

    def bcc(self, img):
        r = self.rng
        pearl = self.skin * 0.75 + np.array([70, 55, 60])
        img, (cx, cy, rad, m) = self.nodule(img, (0.18, 0.35), pearl, shade=0.6)
        ring = np.clip(1 - np.abs(np.sqrt((self.X - cx) ** 2 + (self.Y - cy) ** 2) - rad * 0.9) / (0.12 * rad), 0, 1)
        img = img + 25 * ring[..., None]
        for _ in range(r.integers(3, 7)):
            t = np.linspace(-1, 1, 40)
            a = r.uniform(0, np.pi)
            px = cx + rad * 0.8 * t * np.cos(a) + 0.05 * np.sin(6 * t + r.uniform(0, 6))
            py = cy + rad * 0.8 * t * np.sin(a) + 0.05 * np.cos(5 * t + r.uniform(0, 6))
            d = np.min((self.X[..., None] - px) ** 2 + (self.Y[..., None] - py) ** 2, axis=-1)
            line = np.exp(-d / (0.012**2))
            img = _blend(img, np.array([190, 40, 50]), line, 0.7)
        if r.random() < 0.4:
            ulcer = _blob(self.X, self.Y, cx, cy, rad * 0.3, r, irregular=0.4, soft=0.3)
            img = _blend(img, np.array([110, 35, 30]), ulcer, 0.85)
        return img

    def contact_dermatitis(self, img):
        r = self.rng
        if r.random() < 0.5:
            a = r.uniform(0, np.pi)
            d = np.abs(self.X * np.cos(a) + self.Y * np.sin(a) - r.uniform(-0.3, 0.3))
            m = np.clip(1 - d / r.uniform(0.2, 0.45), 0, 1) ** 0.7
        else:
            m = _blob(self.X, self.Y, r.uniform(-0.3, 0.3), r.uniform(-0.3, 0.3), r.uniform(0.4, 0.8), r,
                      irregular=0.5, soft=0.8)
        img = _blend(img, _redden(self.skin, r.uniform(0.4, 0.7)), m)
        ves = self.speckle(r.uniform(0.02, 0.06)) * (m > 0.3)
        return _blend(img, np.array([245, 235, 215]), ves, 0.7)

    def lupus(self, img):
        r = self.rng
        for _ in range(r.integers(1, 3)):
            cx, cy, rad = r.uniform(-0.45, 0.45), r.uniform(-0.45, 0.45), r.uniform(0.22, 0.45)
            outer = _blob(self.X, self.Y, cx, cy, rad, r, irregular=0.25, soft=0.15)
            inner = _blob(self.X, self.Y, cx, cy, rad * r.uniform(0.45, 0.7), r, irregular=0.3, soft=0.3)
            img = _blend(img, _redden(self.skin, r.uniform(0.5, 0.85)), outer * (1 - inner))
            img = _blend(img, self.skin * 1.12 + 15, inner, r.uniform(0.4, 0.8))
            img = _blend(img, np.array([240, 236, 230]), self.speckle(0.1) * outer * (1 - inner), 0.35)
        return img

    def sarcoidosis(self, img):
        r = self.rng
        brown = self.skin * np.array([0.78, 0.55, 0.45]) + np.array([35, 10, 0])
        cx, cy, ring = r.uniform(-0.3, 0.3), r.uniform(-0.3, 0.3), r.uniform(0.2, 0.5)
        annular = r.random() < 0.6
        for _ in range(r.integers(5, 16)):
            if annular:
                a = r.uniform(0, 2 * np.pi)
                px, py = cx + ring * np.cos(a), cy + ring * np.sin(a)
            else:
                px, py = cx + r.normal(0, 0.3), cy + r.normal(0, 0.3)
            m = _blob(self.X, self.Y, px, py, r.uniform(0.05, 0.12), r, irregular=0.2, soft=0.3)
            img = _blend(img, brown, m, r.uniform(0.6, 0.95))
        return img

    def neutrophilic(self, img):
        r = self.rng
        for _ in range(r.integers(1, 3)):
            cx, cy, rad = r.uniform(-0.4, 0.4), r.uniform(-0.4, 0.4), r.uniform(0.2, 0.45)
            m = _blob(self.X, self.Y, cx, cy, rad, r, irregular=0.3, soft=0.35)
            img = _blend(img, _redden(self.skin, r.uniform(0.6, 0.95)), m)
            if r.random() < 0.5:
                ulcer = _blob(self.X, self.Y, cx, cy, rad * 0.6, r, irregular=0.4, soft=0.2)
                img = _blend(img, np.array([150, 120, 70]), ulcer, 0.7)
                edge = np.clip(m - ulcer, 0, 1)
                img = _blend(img, self.skin * np.array([0.6, 0.4, 0.7]) + np.array([30, 0, 40]), edge, 0.6)
            else:
                pus = self.speckle(0.05) * (m > 0.4)
                img = _blend(img, np.array([240, 225, 150]), pus, 0.8)
        return img

    def photodermatosis(self, img):
        r = self.rng
        a = r.uniform(0, 2 * np.pi)
        d = self.X * np.cos(a) + self.Y * np.sin(a) - r.uniform(-0.4, 0.3)
        m = np.clip(d / 0.06 + 0.5, 0, 1) * (0.7 + 0.3 * _smooth_noise(r, self.size, 5).clip(-1, 1))
        img = _blend(img, _redden(self.skin, r.uniform(0.35, 0.65)), np.clip(m, 0, 1))
        pap = self.speckle(r.uniform(0.01, 0.04)) * (m > 0.5)
        return _blend(img, _redden(self.skin, 1.0) * 0.9, pap, 0.8)


_DRAW = [
    _Painter.psoriasis, _Painter.scc, _Painter.lichen_planus, _Painter.bcc,
    _Painter.contact_dermatitis, _Painter.lupus, _Painter.sarcoidosis,
    _Painter.neutrophilic, _Painter.photodermatosis,
]


def patient_of(seed: int, class_index: int, index: int) -> int:
    """Patient number of image ``index``: patients have 1–3 photos, assigned in index order."""
    r = _rng(seed, class_index, 7777)
    sizes = r.choice([1, 1, 1, 2, 2, 3], size=index + 1)
    return int(np.searchsorted(np.cumsum(sizes), index, side="right"))


def render(class_index: int, index: int, size: int = 64, seed: int = 0, skin_weights=None) -> np.ndarray:
    """Render image ``index`` of class ``class_index`` as a (size, size, 3) uint8 array (its
    patient's skin type drawn with ``skin_weights``; the same draw, so only the skin changes)."""
    patient = patient_of(seed, class_index, index)
    pr = _rng(seed, class_index, patient, 1)  # patient: skin, lesion layout
    ir = _rng(seed, class_index, index, 2)  # this photo: camera and framing
    skin_type = int(pr.choice(6, p=skin_probabilities(skin_weights))) + 1
    base = SKIN_RGB[skin_type - 1] + pr.normal(0, 7, 3)

    lin = np.linspace(-1, 1, size, dtype=np.float32)
    Yi, Xi = np.meshgrid(lin, lin, indexing="ij")
    zoom_f, ox, oy = ir.uniform(0.85, 1.25), ir.uniform(-0.2, 0.2), ir.uniform(-0.2, 0.2)
    rot = ir.uniform(0, 2 * np.pi)
    X = ((Xi - ox) * np.cos(rot) - (Yi - oy) * np.sin(rot)) / zoom_f
    Y = ((Xi - ox) * np.sin(rot) + (Yi - oy) * np.cos(rot)) / zoom_f

    tone = 1 + 0.06 * _smooth_noise(pr, size, 4)
    skin = base[None, None, :] * tone[..., None]
    pores = 1 + 0.035 * pr.standard_normal((size, size)).astype(np.float32)
    skin = skin * pores[..., None]
    img = _DRAW[class_index](_Painter(X, Y, skin, pr, size), skin.copy())

    # Camera: lighting gradient, white balance, exposure.
    ga = ir.uniform(0, 2 * np.pi)
    light = 1 + ir.uniform(0, 0.2) * (Xi * np.cos(ga) + Yi * np.sin(ga)) - ir.uniform(0, 0.15) * (Xi**2 + Yi**2)
    img = img * light[..., None] * ir.uniform(0.9, 1.1) * (1 + ir.normal(0, 0.03, 3))
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))

    if ir.random() < 0.35:  # hair
        draw = ImageDraw.Draw(pil)
        hair = tuple(int(v) for v in (np.array([40, 30, 25]) * ir.uniform(0.5, 1.5)))
        for _ in range(ir.integers(1, 8)):
            x0, y0 = ir.uniform(0, size, 2)
            a, length = ir.uniform(0, 2 * np.pi), ir.uniform(0.2, 0.8) * size
            bend = ir.uniform(-0.5, 0.5)
            pts = [(x0 + t * length * np.cos(a + bend * t), y0 + t * length * np.sin(a + bend * t))
                   for t in np.linspace(0, 1, 8)]
            draw.line(pts, fill=hair, width=max(1, size // 96))
    blur = ir.uniform(0, 0.8) * size / 64
    if blur > 0.3:
        pil = pil.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(pil, dtype=np.float32) + ir.normal(0, ir.uniform(1, 4), (size, size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def render_meta(class_index: int, index: int, seed: int = 0, skin_weights=None) -> tuple[int, int]:
    """(skin type, patient) of an image without rendering it."""
    patient = patient_of(seed, class_index, index)
    skin_type = int(_rng(seed, class_index, patient, 1).choice(6, p=skin_probabilities(skin_weights))) + 1
    return skin_type, patient


def load_demo(root: str | Path, n_per_class: int = 200, size: int = 64, seed: int = 0,
              classes: list[str] | None = None, skin_weights=None) -> pd.DataFrame:
    """Render (once) and load the demo data set under ``root``; returns the image table.

    Files are written atomically and reused by later calls, so only the first call pays for
    rendering and later calls only list files.
    """
    spec = DemoSpec(n_per_class, size, seed, None if skin_weights is None else tuple(skin_weights))
    folder = Path(root) / spec.key()
    folder.mkdir(parents=True, exist_ok=True)
    wanted = classes or DEMO_CLASSES
    rows = []
    for name in wanted:
        c = DEMO_CLASSES.index(name)
        cdir = folder / name.replace(" ", "_")
        cdir.mkdir(exist_ok=True)
        for i in range(n_per_class):
            path = cdir / f"{i:05d}.png"
            if not path.exists():
                with atomic_path(path) as tmp:
                    Image.fromarray(render(c, i, size, seed, skin_weights)).save(tmp, format="PNG")
            skin_type, patient = render_meta(c, i, seed, skin_weights)
            rows.append({"id": f"demo-{c}-{i:05d}", "path": str(path), "label": name,
                         "skin_type": skin_type, "patient": f"demo-{c}-p{patient:05d}"})
    write_json(folder / "README.json", {"what": "dermsynth procedural demo set", "seed": seed, "size": size,
                                        "classes": DEMO_CLASSES,
                                        "digest": hashlib.sha1(spec.key().encode()).hexdigest()})
    return make_table(pd.DataFrame(rows), "demo")

