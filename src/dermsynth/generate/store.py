"""The synthetic store: image files + a manifest linking each image to its reference.

Layout::

    STORE/store.json                     backend, model, fingerprint (one model per store)
    STORE/images/<method>/<synth_id>.png
    STORE/manifest/part-*.parquet        one part per written batch (append-only)

Each batch writes its images atomically, then its manifest part atomically; a crash
between the two leaves images that the next run regenerates identically (same seed), so
nothing is lost or duplicated. ``read_manifest`` keeps only rows whose image exists.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dermsynth.errors import DermsynthError

MANIFEST_FIELDS = ["synth_id", "ref_id", "label", "skin_type", "method", "backend", "model", "fingerprint",
                   "prompt", "seed", "steps", "guidance", "strength", "mask", "created", "path"]


def open_store(store: str | Path, backend: str, model: str, fingerprint: str) -> Path:
    """Create or reopen a store; refuse one written by another model."""
    store = Path(store)
    meta_path = store / "store.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["fingerprint"] != fingerprint:
            raise DermsynthError(
                f"{store} holds images of model {meta['model']} (fingerprint {meta['fingerprint']}), not of "
                f"{model} ({fingerprint}); write to a new --out folder (one model per store)")
        return store
    store.mkdir(parents=True, exist_ok=True)
    (store / "images").mkdir(exist_ok=True)
    (store / "manifest").mkdir(exist_ok=True)
    tmp = store / "store.json.tmp"
    tmp.write_text(json.dumps({"backend": backend, "model": model, "fingerprint": fingerprint,
                               "created": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    tmp.replace(meta_path)
    return store


def save_image_atomic(arr_or_img, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(np.asarray(arr_or_img))
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    img.save(tmp)
    tmp.replace(path)


def append_manifest(store: Path, rows: list[dict]) -> None:
    if not rows:
        return
    part = store / "manifest" / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = part.with_name("." + part.name + ".tmp")
    pd.DataFrame(rows).reindex(columns=MANIFEST_FIELDS).to_parquet(tmp)
    tmp.replace(part)


def read_manifest(store: str | Path) -> pd.DataFrame:
    """All rows of a store (absolute paths), de-duplicated by synth_id, files present."""
    store = Path(store)
    if not (store / "store.json").exists():
        raise DermsynthError(f"{store} is not a synthetic store (no store.json); create it with `dermsynth generate`")
    parts = sorted((store / "manifest").glob("part-*.parquet"))
    if not parts:
        return pd.DataFrame(columns=MANIFEST_FIELDS)
    df = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    df = df.drop_duplicates("synth_id", keep="last")
    df["path"] = [str(store / p) for p in df["path"]]
    exists = np.array([Path(p).exists() for p in df["path"]], dtype=bool)
    return df[exists].reset_index(drop=True)


def export_webdataset(store: str | Path, out_dir: str | Path, shard_size: int = 1000) -> list[Path]:
    """Write ``shard-{method}-{index:05d}.tar`` files: ``<key>.png`` + ``<key>.json`` per sample."""
    manifest = read_manifest(store)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for method, rows in manifest.groupby("method", sort=True):
        for i in range(0, len(rows), shard_size):
            path = out_dir / f"shard-{method}-{i // shard_size:05d}.tar"
            tmp = path.with_suffix(".tar.tmp")
            with tarfile.open(tmp, "w") as tar:
                for _, r in rows.iloc[i:i + shard_size].iterrows():
                    meta = {k: (None if pd.isna(v) else v) for k, v in r.items() if k != "path"}
                    meta = json.loads(json.dumps(meta, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
                    for ext, data in (("png", Path(r["path"]).read_bytes()), ("json", json.dumps(meta).encode())):
                        info = tarfile.TarInfo(f"{r['synth_id']}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
            tmp.replace(path)
            shards.append(path)
    return shards


def import_webdataset(shards: list[str | Path], store: str | Path) -> int:
    """Read shards (as written by :func:`export_webdataset`) into a store; returns images added."""
    import webdataset as wds

    store = Path(store)
    rows, first = [], None
    for sample in wds.WebDataset([str(s) for s in shards], shardshuffle=False):
        meta = json.loads(sample["json"])
        first = first or meta
        rel = Path("images") / meta["method"] / f"{meta['synth_id']}.png"
        (store / rel).parent.mkdir(parents=True, exist_ok=True)
        (store / rel).write_bytes(sample["png"])
        rows.append({**meta, "path": str(rel)})
    if first is None:
        return 0
    open_store(store, first.get("backend", "imported"), first.get("model", "imported"), first["fingerprint"])
    append_manifest(store, rows)
    return len(rows)
