"""Designing a reader study (a clinicians' Turing test): which images, in which tasks, served how.

A reader must have nothing to go on but the pixels. So:

* **Matched draw.** Synthetic items are stratified by class, then method and skin-type group
  (seeded); real items are drawn to the synthetic items' class and skin-type group counts, so
  no class (or group) is all real. Each reference image and each group (patient, duplicate
  cluster) gives at most one item in the whole study: no twins, no near-duplicates.
* **One native resolution.** Every item is brought to the smallest native resolution among
  its sources (the centre square's side) before the final resize, so a 32-px synthetic image
  is not the blurry one beside 64-px real photos. Sources of different resolutions are refused
  unless ``allow_mixed_resolution`` (then warned); the native sizes are recorded.
* **Identical files.** RGB, centre square, one size, baseline JPEG at one quality, no metadata,
  an opaque random name, zero-padded after the JPEG's end to one fixed length (decoders ignore
  it): Content-Length carries nothing. Written in a random order, all with one fixed mtime.

A study is a folder: ``config.json``, ``items/*.jpg`` (the only thing served or exported) and ``study.sqlite``.
"""

from __future__ import annotations

import io as bytes_io
import logging
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from dermsynth import files
from dermsynth.data.images import load_rgb, resize_center_crop
from dermsynth.data.splits import Split
from dermsynth.data.synthetic_store import read_manifest
from dermsynth.errors import ConfigError, DataError
from dermsynth.reader_study import access
from dermsynth.reader_study import database as db

log = logging.getLogger(__name__)

FIXED_MTIME = 946_684_800  # 2000-01-01T00:00:00Z, the same for every served file
PAD_BLOCK = 1024  # files are padded to a multiple of this, the same length for all


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
    allow_mixed_resolution: bool = False  # sources of different native sizes: warn instead of refusing
    methods: tuple[str, ...] | None = None  # only these generation methods' images (default: all in the store)


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _key(values: pd.Series) -> pd.Series:
    """Strata keys as strings, missing values included ("∅"): pandas ≥ 3 keeps NaN through
    ``astype(str)`` and ``groupby`` would drop those rows."""
    return values.map(lambda v: "∅" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v))


def _interleaved(frame: pd.DataFrame, keys: list[str], rng: np.random.Generator) -> list:
    """Row labels of ``frame`` round-robin over the strata of ``keys``, hierarchically: classes as
    equal as they can be, then within each class the next key as equal as it can be. Which strata
    come first is random (seeded), not alphabetical."""
    if frame.empty:
        return []
    if not keys:
        return list(frame.index[rng.permutation(len(frame))])
    parts = [_interleaved(g, keys[1:], rng) for _, g in frame.groupby(_key(frame[keys[0]]), sort=True)]
    parts = [parts[i] for i in rng.permutation(len(parts))]
    return [part[i] for i in range(max(map(len, parts))) for part in parts if i < len(part)]


def _draw(frame: pd.DataFrame, n: int, keys: list[str], rng: np.random.Generator, used: set,
          cap: dict | None = None) -> pd.DataFrame:
    """Up to ``n`` rows in stratified order, at most one per ``group`` (``used``: groups taken
    already, updated) and at most ``cap[(class, skin-type group)]`` per class and skin-type group."""
    taken, per_stratum = [], {}
    strata = list(zip(_key(frame["label"]), _key(frame["skin_group"]), strict=True)) if cap is not None else None
    position = {i: k for k, i in enumerate(frame.index)}
    for i in _interleaved(frame, keys, rng):
        if len(taken) == n:
            break
        group = frame.at[i, "group"]
        stratum = strata[position[i]] if strata is not None else None
        if group in used or (cap is not None and per_stratum.get(stratum, 0) >= cap.get(stratum, 0)):
            continue
        used.add(group)
        per_stratum[stratum] = per_stratum.get(stratum, 0) + 1
        taken.append(i)
    return frame.loc[taken]


def _match_reals(reals: pd.DataFrame, synth: pd.DataFrame, rng: np.random.Generator, used: set) -> tuple:
    """Real rows with the synthetic rows' counts per (class, skin-type group), one per group.
    A skin-type group that is short is filled from the same class (counted as a mismatch); a
    class that is short is an error naming it."""
    chosen, mismatched = [], 0
    want = synth.groupby([_key(synth["label"]), _key(synth["skin_group"])]).size()
    real_keys = pd.DataFrame({"label": _key(reals["label"]), "skin_group": _key(reals["skin_group"])},
                             index=reals.index)
    for (label, group), n in want.items():
        same = reals[(real_keys["label"] == label) & (real_keys["skin_group"] == group)]
        got = _draw(same, int(n), [], rng, used)
        if len(got) < n:
            rest = reals[(real_keys["label"] == label) & ~reals.index.isin(same.index)]
            more = _draw(rest, int(n) - len(got), [], rng, used)
            mismatched += len(more)
            got = pd.concat([got, more])
        if len(got) < n:
            raise DataError(f"class {label!r}: {int(n)} real items are needed to match the synthetic ones but only "
                            f"{len(got)} real images of distinct patients are left; lower --items or use "
                            "--real-from pool")
        chosen.append(got)
    return (pd.concat(chosen) if chosen else reals.iloc[:0]), mismatched


def native_side(src: str | Path) -> int:
    """The side of an image's centre square at its own resolution (read from the header)."""
    with Image.open(src) as img:
        return min(img.size)


def encode_item(src: str | Path | Image.Image, native: int | None, size: int, quality: int) -> bytes:
    """The one encoding every served image gets: RGB, centre square brought to ``native`` px
    (when larger), then to ``size`` px, baseline JPEG at ``quality`` with 4:2:0 chroma
    subsampling and no metadata (no EXIF, ICC or comments)."""
    img = src if isinstance(src, Image.Image) else load_rgb(src)
    img = img.convert("RGB")
    if native is not None and min(img.size) > native:
        img = resize_center_crop(img, native)
    img = resize_center_crop(img, size)
    clean = Image.frombytes("RGB", img.size, img.tobytes())  # drops every info/metadata field
    buf = bytes_io.BytesIO()
    clean.save(buf, format="JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    return buf.getvalue()


def write_items(folder: Path, encoded: dict[str, bytes], rng: np.random.Generator) -> int:
    """Write ``{image_id: jpeg}`` padded to one length, in a random order, with one mtime; returns the length."""
    length = -(-max(map(len, encoded.values())) // PAD_BLOCK) * PAD_BLOCK
    folder.mkdir(parents=True, exist_ok=True)
    ids = list(encoded)
    for i in rng.permutation(len(ids)):
        path = folder / f"{ids[i]}.jpg"
        files.write_bytes(path, encoded[ids[i]].ljust(length, b"\0"))
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))
    return length


def sharpness(jpeg: bytes) -> float:
    """Variance of the Laplacian (the usual focus measure): the tell of a 32-px image beside 64-px ones."""
    from scipy import ndimage

    grey = np.asarray(Image.open(bytes_io.BytesIO(jpeg)).convert("L"), dtype=float)
    return float(ndimage.laplace(grey).var())


def measure_tells(rows: list[dict], encoded: dict[str, bytes], length: int) -> dict:
    """ROC AUC (synthetic as positive) of the served length and of sharpness over the single-image
    items: 0.5 is no tell. The length is one for every file by construction; sharpness left after
    the common native resolution is the images' own fine detail (a generator's noise or blur)."""
    from dermsynth.reader_study.mrmc import auc

    single = [r for r in rows if r["task"] == "single"]
    synthetic = np.array([r["truth"] == "synthetic" for r in single])
    sharp = [sharpness(encoded[r["image_a"]]) for r in single]
    return {"content_length_auc": auc(synthetic, np.full(len(single), float(length))),
            "sharpness_auc": auc(synthetic, np.array(sharp))}


def _attention_image(expected: str, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), (205, 160, 130))
    draw = ImageDraw.Draw(img)
    text = f"Attention check:\nanswer '{expected}'\nwith confidence 5"
    draw.multiline_text((size // 10, size // 3), text, fill=(20, 20, 20), spacing=6)
    return img


def _candidates(store: str | Path, split: Split) -> pd.DataFrame:
    """The store's images with their reference's group and skin-type group (a reference the split
    does not know is its own group)."""
    synth = read_manifest(store)
    if synth.empty:
        raise DataError(f"the store {store} holds no synthetic images")
    meta = split.table.set_index("id")
    known = synth["ref_id"].isin(meta.index)
    groups = synth["ref_id"].map(meta["group"]).where(known, "ref:" + synth["ref_id"].astype(str))
    skin = synth["ref_id"].map(meta["skin_group"]) if "skin_group" in meta else pd.Series(None, index=synth.index)
    return synth.assign(group=groups, skin_group=skin.where(known, None))


def _check_resolutions(sides: dict[str, list[int]], allow: bool) -> int:
    """The study's native resolution: the smallest source side; refuse mixed ones unless allowed."""
    flat = [s for v in sides.values() for s in v]
    native = min(flat)
    if len(set(flat)) > 1:
        described = ", ".join(f"{k} {min(v)}–{max(v)} px" if min(v) != max(v) else f"{k} {v[0]} px"
                              for k, v in sides.items() if v)
        if not allow:
            raise ConfigError(f"the items' sources differ in resolution ({described}; the centre square's side), "
                              "so sharpness would tell real from synthetic; pass --allow-mixed-resolution to bring "
                              f"every item to {native} px before the final resize, or use sources of one resolution")
        log.warning("sources differ in resolution (%s): every item is brought to %d px first", described, native)
    return native


def create_study(store: str | Path, split: Split, out: str | Path, cfg: StudyConfig = StudyConfig()) -> dict:
    """Draw the items from ``store`` (synthetic) and ``split`` (real), encode them, write the study."""
    out = Path(out)
    if (out / db.DB_NAME).exists():
        raise ConfigError(f"{out} already holds a study; choose another folder (a study is never overwritten)")
    if cfg.real_from not in ("test", "pool"):
        raise ConfigError(f"real_from={cfg.real_from!r}; choose test (held-out images) or pool (training pool)")
    if cfg.n_items % 2 or cfg.n_items < 0 or cfg.n_pairs < 0 or cfg.attention_checks < 0:
        raise ConfigError(f"n_items={cfg.n_items}: use an even number ≥ 0 (half real, half synthetic); "
                          "pairs and attention checks ≥ 0")
    rng = np.random.default_rng(cfg.seed)
    synth = _candidates(store, split)
    if cfg.methods:
        unknown = sorted(set(cfg.methods) - set(synth["method"]))
        if unknown:
            raise ConfigError(f"methods {unknown} have no image in the store {store}; it holds "
                              f"{sorted(synth['method'].unique())}")
        synth = synth[synth["method"].isin(cfg.methods)]
    reals = split.test if cfg.real_from == "test" else split.pool
    half, used = cfg.n_items // 2, set()
    # a class and skin-type group gets no more synthetic items than it has real images of distinct
    # groups to match them
    free = reals[~reals["group"].isin(set(synth["group"]))] if cfg.real_from == "pool" else reals
    cap = free.groupby([_key(free["label"]), _key(free["skin_group"])])["group"].nunique().to_dict()
    chosen_synth = _draw(synth, half, ["label", "method", "skin_group"], rng, used, cap)
    if len(chosen_synth) < half:
        strata = [f"{k[0]}/{k[1]}: {v}" for k, v in sorted(cap.items())]
        strata = strata[:12] + ([f"… {len(strata) - 12} more"] if len(strata) > 12 else [])
        raise DataError(
            f"{half} synthetic items asked (half of --items {cfg.n_items}) but only {len(chosen_synth)} can be drawn "
            f"with one item per reference image and patient and a matching real image each: the store {store} has "
            f"{synth['group'].nunique()} distinct reference groups, the {cfg.real_from} images "
            f"{reals['group'].nunique()} groups (per class/skin-type group: {', '.join(strata)}); "
            "lower --items")
    chosen_real, mismatched = _match_reals(reals, chosen_synth, rng, used)
    # a pair shows a synthetic image beside its real reference (from the pool), of a group no other item has
    pair_src = synth[synth["ref_id"].isin(split.pool["id"])]
    chosen_pairs = _draw(pair_src, cfg.n_pairs, ["label", "method"], rng, used)
    if len(chosen_pairs) < cfg.n_pairs:
        raise DataError(f"{cfg.n_pairs} pairs asked but only {len(chosen_pairs)} synthetic images have a training-pool "
                        "reference of a patient no other item shows; lower --pairs or --items")

    ref_meta = split.table.set_index("id")
    pair_real = [ref_meta.loc[r, "path"] for r in chosen_pairs["ref_id"]]
    real_sides, synth_sides = map(native_side, chosen_real["path"]), map(native_side, chosen_synth["path"])
    real_sides, synth_sides = list(real_sides), list(synth_sides)
    pair_sides = [(native_side(s), native_side(r)) for s, r in zip(chosen_pairs["path"], pair_real, strict=True)]
    sides = {"real": real_sides + [r for _, r in pair_sides], "synthetic": synth_sides + [s for s, _ in pair_sides]}
    native = _check_resolutions(sides, cfg.allow_mixed_resolution) if sides["real"] or sides["synthetic"] else None

    rows: list[dict] = []
    encoded: dict[str, bytes] = {}

    def add(src) -> str:
        image_id = secrets.token_hex(12)  # opaque, same length for every image
        encoded[image_id] = encode_item(src, native, cfg.image_size, cfg.jpeg_quality)
        return image_id

    for r, side in zip(chosen_real.itertuples(), real_sides, strict=True):
        rows.append(dict(task="single", truth="real", image_a=add(r.path), label=r.label, method="real",
                         skin_group=r.skin_group, source_id=str(r.id), ref_id=None, native_size=side))
    for r, side in zip(chosen_synth.itertuples(), synth_sides, strict=True):
        rows.append(dict(task="single", truth="synthetic", image_a=add(r.path), label=r.label, method=r.method,
                         skin_group=r.skin_group, source_id=str(r.synth_id), ref_id=str(r.ref_id), native_size=side))
    for r, real_path, (s_side, r_side) in zip(chosen_pairs.itertuples(), pair_real, pair_sides, strict=True):
        left_synthetic = bool(rng.integers(2))
        a, b = (r.path, real_path) if left_synthetic else (real_path, r.path)
        rows.append(dict(task="pair", truth="left" if left_synthetic else "right", image_a=add(a), image_b=add(b),
                         label=r.label, method=r.method, skin_group=r.skin_group, source_id=str(r.synth_id),
                         ref_id=str(r.ref_id), native_size=min(s_side, r_side)))
    for _ in range(cfg.attention_checks):
        expected = ["real", "synthetic"][int(rng.integers(2))]
        image_id = secrets.token_hex(12)
        encoded[image_id] = encode_item(_attention_image(expected, cfg.image_size), None, cfg.image_size,
                                        cfg.jpeg_quality)
        rows.append(dict(task="attention", truth=expected, image_a=image_id, label=None, method="attention",
                         skin_group=None, source_id=None, ref_id=None))
    for row in rows:
        row["item_id"] = secrets.token_hex(12)
        row.setdefault("image_b", None)
        row["skin_group"] = None if pd.isna(row["skin_group"]) else str(row["skin_group"])
    rows = [rows[i] for i in rng.permutation(len(rows))]  # no order in the database either
    file_bytes = write_items(out / "items", encoded, rng) if encoded else 0
    tells = measure_tells(rows, encoded, file_bytes)
    off = {k: round(v, 2) for k, v in tells.items() if np.isfinite(v) and not 0.4 <= v <= 0.6}
    if off:
        log.warning("low-level tells remain (ROC AUC real vs synthetic outside 0.4–0.6: %s): with one native "
                    "resolution and one file length this is the images' own fine detail — the generator's noise or "
                    "blur — which readers may judge by; compare methods with --methods, or use a better generator",
                    off)
    conn = db.connect(out / db.DB_NAME)
    db.create_schema(conn)
    db.insert_items(conn, rows)
    admin = access.set_admin_token(conn)
    conn.close()
    config = {**asdict(cfg), "store": str(store), "split_digest": split.digest(),
              "classes": sorted(map(str, split.table["label"].unique())),
              "n_real": len(chosen_real), "n_synthetic": len(chosen_synth), "n_pair": len(chosen_pairs),
              "native_size": native, "source_sizes": {k: sorted(set(v)) for k, v in sides.items()},
              "skin_group_mismatches": mismatched, "file_bytes": file_bytes,
              "tells": {k: _finite(v) for k, v in tells.items()}}
    files.write_json(out / "config.json", config)
    return {"folder": str(out), "items": len(rows), "admin_token": admin, **config}
