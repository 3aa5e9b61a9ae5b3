"""Designing a reader study (a clinicians' Turing test): which images, in which tasks, served how.

Items are balanced real vs synthetic and stratified by class (and by method and skin-type
group) with a seeded draw. In the single-image task a real image and a synthetic image made
from it never both appear, so no reader sees twins. Every served image is re-encoded the same
way — RGB, centre square, the same size, JPEG at one quality, no metadata, an opaque random
name — so file type, size, EXIF or PNG-vs-JPEG cannot give the answer away: only pixels differ.

A study is a folder: ``config.json``, ``items/*.jpg`` and ``study.sqlite`` (items, readers,
answers), which can be copied, archived and re-analysed.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from dermsynth import io
from dermsynth.data.images import load_rgb, resize_center_crop
from dermsynth.data.splits import Split
from dermsynth.data.synthetic_store import read_manifest
from dermsynth.errors import ConfigError, DataError
from dermsynth.readers import database as db


@dataclass(frozen=True)
class StudyConfig:
    n_items: int = 40  # single-image items, half real and half synthetic
    n_pairs: int = 0  # pair items: a synthetic image beside its real reference
    real_from: str = "test"  # "test": held-out test images; "pool": the training pool
    attention_checks: int = 0
    image_size: int = 256
    jpeg_quality: int = 90
    seed: int = 0
    ask_diagnosis: bool = False


def _stratified(frame: pd.DataFrame, n: int, keys: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """``n`` rows drawn round-robin over the strata of ``keys``, hierarchically: classes as equal
    as they can be, then within each class the next key (method, skin-type group) as equal as
    it can be. Which strata come first is random (seeded), not alphabetical."""
    if n > len(frame):
        raise DataError(f"asked for {n} images but only {len(frame)} are available; lower the number of items")
    return frame.loc[_interleaved(frame, keys, rng)[:n]]


def _interleaved(frame: pd.DataFrame, keys: list[str], rng: np.random.Generator) -> list:
    if not keys:
        return list(frame.index[rng.permutation(len(frame))])
    parts = [_interleaved(g, keys[1:], rng) for _, g in frame.groupby(frame[keys[0]].astype(str), sort=True)]
    parts = [parts[i] for i in rng.permutation(len(parts))]
    return [part[i] for i in range(max(map(len, parts))) for part in parts if i < len(part)]


def encode_item(src: str | Path | Image.Image, dest: Path, size: int, quality: int) -> None:
    """The one encoding every served image gets: RGB, centre square at ``size`` px, baseline JPEG
    at ``quality`` with 4:2:0 chroma subsampling, and no metadata (no EXIF, ICC or comments)."""
    img = src if isinstance(src, Image.Image) else load_rgb(src)
    img = resize_center_crop(img.convert("RGB"), size)
    clean = Image.frombytes("RGB", img.size, img.tobytes())  # drops every info/metadata field
    with io.atomic_path(dest) as tmp:
        clean.save(tmp, format="JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)


def _attention_image(expected: str, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), (205, 160, 130))
    draw = ImageDraw.Draw(img)
    text = f"Attention check:\nanswer '{expected}'\nwith confidence 5"
    draw.multiline_text((size // 10, size // 3), text, fill=(20, 20, 20), spacing=6)
    return img


def create_study(store: str | Path, split: Split, out: str | Path, cfg: StudyConfig = StudyConfig()) -> dict:
    """Draw the items from ``store`` (synthetic) and ``split`` (real), encode them, write the study."""
    out = Path(out)
    if (out / db.DB_NAME).exists():
        raise ConfigError(f"{out} already holds a study; choose another folder (a study is never overwritten)")
    if cfg.real_from not in ("test", "pool"):
        raise ConfigError(f"real_from={cfg.real_from!r}; choose test (held-out images) or pool (training pool)")
    if cfg.n_items % 2:
        raise ConfigError(f"n_items={cfg.n_items}: use an even number (half real, half synthetic)")
    rng = np.random.default_rng(cfg.seed)
    synth = read_manifest(store)
    if synth.empty:
        raise DataError(f"the store {store} holds no synthetic images")
    ref_meta = split.table.set_index("id")
    synth = synth.assign(skin_group=[ref_meta["skin_group"].get(r) if r in ref_meta.index else None
                                     for r in synth["ref_id"]])
    half = cfg.n_items // 2
    chosen_synth = _stratified(synth, half, ["label", "method", "skin_group"], rng) if half else synth.iloc[:0]
    reals = split.test if cfg.real_from == "test" else split.pool
    reals = reals[~reals["id"].isin(set(chosen_synth["ref_id"]))]  # no twins
    chosen_real = _stratified(reals, half, ["label", "skin_group"], rng) if half else reals.iloc[:0]
    # a pair shows a real reference: never one whose synthetic twin or itself is a single item
    seen = set(chosen_synth["ref_id"]) | set(chosen_real["id"])
    pair_src = synth[~synth["synth_id"].isin(chosen_synth["synth_id"]) & synth["ref_id"].isin(split.pool["id"])
                     & ~synth["ref_id"].isin(seen)]
    chosen_pairs = _stratified(pair_src, cfg.n_pairs, ["label", "method"], rng) if cfg.n_pairs else pair_src.iloc[:0]

    items_dir = out / "items"
    items_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def encoded(src) -> str:
        image_id = secrets.token_hex(12)  # opaque, same length for every image
        encode_item(src, items_dir / f"{image_id}.jpg", cfg.image_size, cfg.jpeg_quality)
        return image_id

    for _, r in chosen_real.iterrows():
        rows.append(dict(task="single", truth="real", image_a=encoded(r["path"]), label=r["label"], method="real",
                         skin_group=r.get("skin_group"), source_id=str(r["id"]), ref_id=None))
    for _, r in chosen_synth.iterrows():
        rows.append(dict(task="single", truth="synthetic", image_a=encoded(r["path"]), label=r["label"],
                         method=r["method"], skin_group=r["skin_group"], source_id=str(r["synth_id"]),
                         ref_id=str(r["ref_id"])))
    for _, r in chosen_pairs.iterrows():
        real_path = ref_meta.loc[r["ref_id"], "path"]
        left_synthetic = bool(rng.integers(2))
        a, b = (r["path"], real_path) if left_synthetic else (real_path, r["path"])
        rows.append(dict(task="pair", truth="left" if left_synthetic else "right", image_a=encoded(a),
                         image_b=encoded(b), label=r["label"], method=r["method"], skin_group=r["skin_group"],
                         source_id=str(r["synth_id"]), ref_id=str(r["ref_id"])))
    for _ in range(cfg.attention_checks):
        expected = ["real", "synthetic"][int(rng.integers(2))]
        rows.append(dict(task="attention", truth=expected, image_a=encoded(_attention_image(expected, cfg.image_size)),
                         label=None, method="attention", skin_group=None, source_id=None, ref_id=None))
    for row in rows:
        row["item_id"] = secrets.token_hex(12)
        row.setdefault("image_b", None)
        row["skin_group"] = None if pd.isna(row["skin_group"]) else str(row["skin_group"])
    conn = db.connect(out / db.DB_NAME)
    db.create_schema(conn)
    db.insert_items(conn, rows)
    admin = db.set_admin_token(conn)
    conn.close()
    config = {**asdict(cfg), "store": str(store), "classes": sorted(split.table["label"].unique()),
              "n_real": len(chosen_real), "n_synthetic": len(chosen_synth), "n_pair": len(chosen_pairs)}
    io.write_json(out / "config.json", config)
    return {"folder": str(out), "items": len(rows), "admin_token": admin, **config}
