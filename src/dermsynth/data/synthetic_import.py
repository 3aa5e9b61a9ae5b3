"""``data import-synthetic``: WebDataset shards — the authors' released images or a dermsynth
export — streamed into synthetic stores a study can use.

Released images go to one store per generator variant (``OUT/finetune``, ``OUT/pretrained``: a
store holds one model's images), a dermsynth export to ``OUT`` itself. Every image keeps its
provenance in the manifest (source shard, key, ``generation_num``, ``tag``) and the released
generation settings; the store's ``provenance.json`` says that the generator's training set is
unknown (the released fine-tuned models learnt from real images the release does not name),
which the leakage audit and the report then say instead of "clean".

Resumable: each shard's progress (samples read, what became of them) is committed with the
manifest rows it produced, every ``BATCH`` samples; a rerun reads a half-read shard on from
where it stopped and skips finished ones. Image ids are fixed by the sample (its released
``name`` or key), so a sample read twice is one image. Memory holds one sample at a time.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from dermsynth import files
from dermsynth.data.released_format import (
    RELEASED_PROMPT,
    RELEASED_SETTINGS,
    SampleSkip,
    is_own_export,
    is_released,
    normalise_label,
    parse_released,
)
from dermsynth.data.shard_stream import URL, ShardTruncated, iter_samples
from dermsynth.data.synthetic_store import (
    TRAINING_IDS,
    append_manifest,
    is_store,
    open_store,
    read_manifest,
    read_training_ids,
    write_provenance,
    write_training_ids,
)
from dermsynth.errors import DataError
from dermsynth.progress import progress_bar

BATCH = 256
STATE = "import-state.json"
RELEASES = "the authors' released images (synthetic-derm: tbuckley/synthetic-derm-1M or -1M-train)"


@dataclass
class Selection:
    """What to import while streaming (None: everything)."""

    labels: set[str] | None = None  # classes, compared with hyphens and spaces alike
    methods: set[str] | None = None  # dermsynth's: text-to-image, inpaint, in-then-outpaint
    variants: set[str] | None = None  # finetune, pretrained
    tags: set[str] | None = None
    max_per_reference: int | None = None  # per (variant, method, reference)

    def __post_init__(self):
        if self.labels is not None:
            self.labels = {normalise_label(v) for v in self.labels}


@dataclass
class ShardTally:
    """What became of one shard's samples (committed with the rows they produced)."""

    read: int = 0
    imported: int = 0
    skipped: Counter = field(default_factory=Counter)
    not_selected: Counter = field(default_factory=Counter)
    done: bool = False
    truncated: str | None = None

    def as_json(self) -> dict:
        return {"read": self.read, "imported": self.imported, "skipped": dict(self.skipped),
                "not_selected": dict(self.not_selected), "done": self.done, "truncated": self.truncated}

    @classmethod
    def of(cls, raw: dict) -> ShardTally:
        return cls(raw["read"], raw["imported"], Counter(raw["skipped"]), Counter(raw["not_selected"]), raw["done"],
                   raw.get("truncated"))


def reference_table(references: pd.DataFrame) -> pd.DataFrame:
    """id → (label, skin_type), the table every sample's reference is looked up in."""
    missing = [c for c in ("id", "label") if c not in references.columns]
    if missing:
        raise DataError(f"the reference table lacks the columns {missing}")
    cols = ["label"] + (["skin_type"] if "skin_type" in references.columns else [])
    return references.assign(id=references["id"].astype(str)).drop_duplicates("id").set_index("id")[cols]


def synth_id_of(variant: str, name: str) -> str:
    return hashlib.sha256(f"released/{variant}/{name}".encode()).hexdigest()[:20]


class Importer:
    """One import into ``out``: stores, per-reference counts, shard tallies (see the module)."""

    def __init__(self, out: Path, references: pd.DataFrame, selection: Selection):
        self.out, self.refs, self.sel = Path(out), reference_table(references), selection
        self.state = files.read_json(self.out / STATE) if (self.out / STATE).exists() else {"shards": {}}
        self.stores: dict[str, Path] = {}
        self.fingerprints: dict[str, str] = {}
        self.per_ref: Counter = Counter()
        self.bytes_written = 0
        for variant, store in self.existing_stores().items():
            man = read_manifest(store)
            self.per_ref.update({(variant, m, r): n for (m, r), n in man.groupby(["method", "ref_id"]).size().items()})

    def existing_stores(self) -> dict[str, Path]:
        """The stores under ``out`` by variant ("own" for ``out`` itself)."""
        found = {"own": self.out} if is_store(self.out) else {}
        return found | {p.name: p for p in sorted(self.out.glob("*")) if p.is_dir() and is_store(p)}

    def store_for(self, variant: str, meta: dict, shard: str) -> Path:
        """The store of a released variant (``OUT/VARIANT``) or of a dermsynth export (``OUT``)."""
        if variant not in self.stores:
            if variant == "own":
                path = open_store(self.out, meta.get("backend") or "imported", meta.get("model") or "imported",
                                  meta["fingerprint"])
                adopt_export_records(path, shard)
            else:
                fingerprint = hashlib.sha256(f"released:{variant}".encode()).hexdigest()[:16]
                path = open_store(self.out / variant, "released", f"released-{variant}", fingerprint)
                write_provenance(path, {"source": RELEASES, "variant": variant, "settings": RELEASED_SETTINGS,
                                        "prompt": RELEASED_PROMPT, "generator_training_set": "unknown",
                                        "why": "the released fine-tuned generators learnt from Fitzpatrick 17k "
                                               "images the release does not list; the pretrained ones from "
                                               "LAION, which may hold any public image"})
            self.stores[variant] = path
            self.fingerprints[variant] = files.read_json(path / "store.json")["fingerprint"]
        return self.stores[variant]

    def row(self, key: str, parts: dict[str, bytes], shard: str) -> tuple[str, dict]:
        """(variant, manifest row) of one sample; :class:`SampleSkip` with the reason otherwise."""
        if "json" not in parts:
            raise SampleSkip("no json")
        if "png" not in parts:
            raise SampleSkip("no png")
        try:
            meta = json.loads(parts["json"])
        except ValueError:
            raise SampleSkip("json does not parse") from None
        if not isinstance(meta, dict):
            raise SampleSkip("json is not an object")
        try:
            with Image.open(io.BytesIO(parts["png"])) as img:
                img.verify()
        except Exception:  # noqa: BLE001 — PIL raises many types for a broken file
            raise SampleSkip("png does not decode") from None
        if is_own_export(meta):
            return "own", {**meta, "source_shard": shard, "source_key": key}
        if not is_released(meta):
            raise SampleSkip("json is neither a released nor a dermsynth sample")
        sample = parse_released(meta)
        if sample.ref_id not in self.refs.index:
            raise SampleSkip("reference md5 not in the data set's table")
        ref = self.refs.loc[sample.ref_id]
        if sample.label is not None and sample.label != normalise_label(ref["label"]):
            raise SampleSkip("label disagrees with the reference's class")
        label = str(ref["label"])
        settings = RELEASED_SETTINGS[sample.method]
        row = {"synth_id": synth_id_of(sample.variant, sample.name or key), "ref_id": sample.ref_id, "label": label,
               "skin_type": ref.get("skin_type"), "method": sample.method, "backend": "released",
               "model": settings["model"] + (" (fine-tuned by the authors)" if sample.variant == "finetune" else ""),
               "prompt": RELEASED_PROMPT.format(normalise_label(label)), "steps": settings["steps"],
               "guidance": settings["guidance"], "strength": settings["strength"],
               "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "source_shard": shard, "source_key": key,
               "generation_num": sample.generation_num, "tag": sample.tag, "released_label": meta["label"]}
        return sample.variant, row

    def not_selected(self, variant: str, row: dict) -> str | None:
        s = self.sel
        if s.variants is not None and variant != "own" and variant not in s.variants:
            return "variant"
        if s.labels is not None and normalise_label(row["label"]) not in s.labels:
            return "label"
        if s.methods is not None and row["method"] not in s.methods:
            return "method"
        if s.tags is not None and row.get("tag") not in s.tags:
            return "tag"
        if s.max_per_reference is not None and \
                self.per_ref[(variant, row["method"], row["ref_id"])] >= s.max_per_reference:
            return "max-per-reference"
        return None

    def commit(self, shard: str, tally: ShardTally, rows: dict[str, list[dict]]) -> None:
        for variant, batch in rows.items():
            store = self.stores[variant]
            append_manifest(store, batch)
        rows.clear()
        self.state["shards"][shard] = tally.as_json()
        files.write_json(self.out / STATE, self.state)

    def import_shard(self, shard: str, bar) -> ShardTally:
        previous = self.state["shards"].get(shard)
        tally = ShardTally.of(previous) if previous else ShardTally()
        if tally.done:
            bar.update(tally.read)
            return tally
        skip, seen, rows = tally.read, 0, {}
        try:
            for key, parts in iter_samples(shard):
                seen += 1
                if seen <= skip:
                    continue
                self._take(key, parts, shard, tally, rows)
                bar.update(1)
                if tally.read % BATCH == 0:
                    self.commit(shard, tally, rows)
            tally.done, tally.truncated = True, None
        except ShardTruncated as exc:
            tally.truncated = str(exc)
        self.commit(shard, tally, rows)
        return tally

    def _take(self, key: str, parts: dict[str, bytes], shard: str, tally: ShardTally, rows: dict) -> None:
        tally.read += 1
        try:
            variant, row = self.row(key, parts, shard)
        except SampleSkip as why:
            tally.skipped[str(why)] += 1
            return
        reason = self.not_selected(variant, row)
        if reason is not None:
            tally.not_selected[reason] += 1
            return
        store = self.store_for(variant, row, shard)
        rel = Path("images") / row["method"] / f"{row['synth_id']}.png"
        files.write_bytes(store / rel, parts["png"])
        self.bytes_written += len(parts["png"])
        rows.setdefault(variant, []).append({**row, "fingerprint": self.fingerprints[variant], "path": str(rel)})
        self.per_ref[(variant, row["method"], row["ref_id"])] += 1
        tally.imported += 1


def adopt_export_records(store: Path, shard: str) -> None:
    """A dermsynth export carries its generator's training ids beside its shards (see
    :mod:`dermsynth.data.synthetic_export`): adopted when the shards are local, else the store
    says that its generator's training set is unknown."""
    beside = Path(shard).parent / TRAINING_IDS
    if not URL.match(shard) and beside.is_file():
        write_training_ids(store, read_training_ids(beside.parent))
    elif not read_training_ids(store):
        write_provenance(store, {"source": f"dermsynth export read from {shard}", "generator_training_set": "unknown",
                                 "why": "the export's generator_training_ids.txt was not beside its shards"})


def import_synthetic(shards: list[str], out: str | Path, references: pd.DataFrame,
                     selection: Selection | None = None) -> dict:
    """Stream ``shards`` into stores under ``out`` (see the module); the summary of what was read,
    imported, skipped (and why) and not selected, per shard and in all."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    imp = Importer(out, references, selection or Selection())
    tallies = {}
    with progress_bar(total=None, unit="img", desc="importing") as bar:
        for shard in shards:
            tallies[shard] = imp.import_shard(shard, bar)
    total = ShardTally()
    for t in tallies.values():
        total.read += t.read
        total.imported += t.imported
        total.skipped.update(t.skipped)
        total.not_selected.update(t.not_selected)
    stores = {variant: {"store": str(path), "images": len(read_manifest(path))}
              for variant, path in imp.existing_stores().items()}
    return {"shards": len(shards), "read": total.read, "imported": total.imported, "skipped": dict(total.skipped),
            "not_selected": dict(total.not_selected),
            "truncated": {s: t.truncated for s, t in tallies.items() if t.truncated},
            "stores": stores, "bytes_written": imp.bytes_written, "disk_free": shutil.disk_usage(out).free}
