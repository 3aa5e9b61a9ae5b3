"""The synthetic store: image files + one manifest linking each image to its reference.

Layout::

    STORE/store.json                     backend, model, fingerprint (one model per store)
    STORE/images/<method>/<synth_id>.png
    STORE/manifest/part-*.parquet        one part per written batch (append-only)
    STORE/references/part-*.parquet      id → path of every reference (append-only)
    STORE/generator_training_ids.txt     every real image the generator learnt from
    STORE/provenance.json                where imported images came from, and whether the
                                         generator's training set is known

This module owns the manifest schema, the references and the generator's training ids —
the records the leakage promise rests on — so they are written and read one way only.
Each batch writes its images atomically, then its manifest part atomically; a crash
between the two leaves images that the next run regenerates identically (same seed), so
nothing is lost or duplicated. Parts have unique names, so concurrent shard workers never
overwrite each other. ``read_manifest`` keeps only rows whose image exists.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dermsynth import files
from dermsynth.errors import DataError

MANIFEST_FIELDS = ["synth_id", "ref_id", "label", "skin_type", "method", "backend", "model", "fingerprint",
                   "prompt", "seed", "steps", "guidance", "strength", "mask", "precision", "created", "path",
                   # provenance of an imported image: where it was read, and the release's own fields
                   "source_shard", "source_key", "generation_num", "tag"]
REQUIRED_FIELDS = ["synth_id", "ref_id", "label", "method", "path"]
TRAINING_IDS = "generator_training_ids.txt"


def open_store(store: str | Path, backend: str, model: str, fingerprint: str) -> Path:
    """Create or reopen a store; refuse one written by another model."""
    store = Path(store)
    meta_path = store / "store.json"
    if meta_path.exists():
        meta = files.read_json(meta_path)
        if meta["fingerprint"] != fingerprint:
            raise DataError(
                f"{store} holds images of model {meta['model']} (fingerprint {meta['fingerprint']}), not of "
                f"{model} ({fingerprint}); write to a new --out folder (one model per store)")
        return store
    for sub in ("images", "manifest", "references"):
        (store / sub).mkdir(parents=True, exist_ok=True)
    files.write_json(meta_path, {"backend": backend, "model": model, "fingerprint": fingerprint,
                              "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return store


def is_store(store: str | Path | None) -> bool:
    return store is not None and Path(store, "store.json").exists()


def save_image(arr_or_img, path: Path) -> None:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(np.asarray(arr_or_img))
    with files.atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def _append_part(folder: Path, frame: pd.DataFrame) -> None:
    files.write_parquet(folder / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet", frame)


def _read_parts(folder: Path) -> pd.DataFrame | None:
    parts = sorted(folder.glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else None


def append_manifest(store: Path, rows: list[dict]) -> None:
    if rows:
        _append_part(Path(store) / "manifest", pd.DataFrame(rows).reindex(columns=MANIFEST_FIELDS))


def read_manifest(store: str | Path) -> pd.DataFrame:
    """All rows of a store (absolute paths), de-duplicated by synth_id, files present."""
    store = Path(store)
    if not is_store(store):
        raise DataError(f"{store} is not a synthetic store (no store.json); create it with "
                        "`dermsynth generator sample`")
    df = _read_parts(store / "manifest")
    if df is None:
        return pd.DataFrame(columns=MANIFEST_FIELDS)
    df = df.drop_duplicates("synth_id", keep="last")
    df["path"] = [str(store / p) for p in df["path"]]
    exists = np.array([Path(p).exists() for p in df["path"]], dtype=bool)
    return df[exists].reset_index(drop=True)


def referenced_ids(path: str | Path) -> set[str]:
    """Every real image the synthetic images of a store were made from — or of every store directly
    under ``path`` (``data import-synthetic`` writes one per generator variant)."""
    path = Path(path)
    stores = [path] if is_store(path) else [p for p in sorted(path.glob("*")) if is_store(p)]
    if not stores:
        raise DataError(f"{path} is neither a synthetic store nor a folder of stores (no store.json); "
                        "give the folder `data import-synthetic --out` or `generator sample --out` wrote")
    return set().union(*(set(read_manifest(s)["ref_id"].astype(str)) for s in stores))


def store_digest(store: str | Path) -> str:
    """Hash of the store's generator and every image it holds with the model that made it: a run
    that draws from the store is pinned to it, so regenerating or adding images gives a new id."""
    man = read_manifest(store)
    ids = "\n".join(sorted(man["synth_id"].astype(str) + ":" + man["fingerprint"].astype(str)))
    fingerprint = files.read_json(Path(store) / "store.json")["fingerprint"]
    return hashlib.sha256(f"{fingerprint}\n{ids}".encode()).hexdigest()[:16]


def check_manifest(manifest: pd.DataFrame, where: str = "synthetic manifest") -> None:
    missing = [c for c in REQUIRED_FIELDS if c not in manifest.columns]
    if missing:
        raise DataError(f"{where} lacks the columns {missing}; expected {REQUIRED_FIELDS}")


def record_references(store: Path, refs: pd.DataFrame) -> None:
    """Keep id → path of every reference, so reports and audits can show real beside synthetic."""
    cols = [c for c in ("id", "path", "label", "skin_type") if c in refs.columns]
    _append_part(Path(store) / "references", refs[cols].astype({"id": str, "path": str}))


def read_references(store: str | Path) -> pd.DataFrame:
    df = _read_parts(Path(store) / "references")
    if df is None:
        return pd.DataFrame(columns=["id", "path", "label", "skin_type"])
    return df.drop_duplicates("id", keep="last").reset_index(drop=True)


def write_training_ids(folder: str | Path, ids) -> Path:
    """Record the real images a generator learnt from (a model folder or a store), sorted, one per line."""
    return files.write_text(Path(folder) / TRAINING_IDS, "\n".join(sorted({str(i) for i in ids})))


def read_training_ids(folder: str | Path | None) -> set[str]:
    """The generator's training ids recorded in ``folder`` (empty when none were recorded)."""
    if folder is None or not Path(folder, TRAINING_IDS).exists():
        return set()
    return set(Path(folder, TRAINING_IDS).read_text().split())


PROVENANCE = "provenance.json"


def write_provenance(store: str | Path, provenance: dict) -> None:
    files.write_json(Path(store) / PROVENANCE, provenance)


def read_provenance(store: str | Path) -> dict:
    """Where the store's images came from (empty for a store this tool generated)."""
    path = Path(store) / PROVENANCE
    return files.read_json(path) if path.exists() else {}


def training_set_known(store: str | Path) -> bool:
    """False when the store's generator learnt from images nobody recorded (released images, an
    export without its training ids): then no audit can prove that no held-out image was among them."""
    return read_provenance(store).get("generator_training_set") != "unknown"
