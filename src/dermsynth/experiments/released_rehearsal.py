"""The rehearsal of a study on imported images (the authors' released set): a stand-in store
made the way the real one is — shards in the released 1M layout, written from the rehearsal's
own data, then read by ``data import-synthetic`` — so the rehearsal runs the import, the
exclusion of held-out references and the provenance accounting that the real study will.

The stand-in images are each reference flipped, colour-shifted and noised (seeded): other
pictures of the reference's class, as a generator's are, at no generator's cost. Half the
patients are referenced, so a split that holds out only unreferenced images
(``held_out_avoids_store``) can still fill its quotas.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from dermsynth.data.images import load_rgb
from dermsynth.data.registry import load_dataset
from dermsynth.data.released_format import released_key_and_json
from dermsynth.data.shard_stream import write_shard
from dermsynth.data.synthetic_import import import_synthetic
from dermsynth.data.synthetic_store import is_store

# dermsynth's method → the released (method word, submethod); outpaint alone was not released.
RELEASED_NAMES = {"text-to-image": ("text_to_image", "text-to-image"), "inpaint": ("inpaint", "inpaint"),
                  "in-then-outpaint": ("inpaint", "inpaint-outpaint")}


def _referenced(patient: str) -> bool:
    """Whole patients are referenced or not, so that the unreferenced half holds whole split groups."""
    return int(hashlib.sha256(str(patient).encode()).hexdigest()[:8], 16) % 2 == 0


def _stand_in_png(path: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.asarray(load_rgb(path), dtype=np.float32)[:, ::-1]
    arr = arr * rng.uniform(0.9, 1.1, 3) + rng.normal(0, 6, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def released_stand_in(base: dict, methods: list[str], per_reference: int, variant: str, folder: Path) -> dict:
    """Write and import the stand-in (once; a rerun reuses it); the [base] fields that point the
    rehearsal at it: ``synthetic_store``, and ``held_out_avoids_store`` when the config sets it."""
    store_root = folder / "store"
    if not is_store(store_root / variant):
        table = load_dataset(base["dataset"], base.get("root"), classes=base.get("classes"),
                             n_per_class=base["demo_n_per_class"], size=base["demo_size"], seed=0)
        shards = []
        for label, rows in table.groupby("label", sort=True):
            for method in methods:
                if method not in RELEASED_NAMES:
                    continue
                word, submethod = RELEASED_NAMES[method]
                released_label = str(label).replace(" ", "-")
                samples = []
                for _, r in rows[rows["patient"].map(_referenced)].iterrows():
                    for g in range(per_reference):
                        key, meta = released_key_and_json(str(r["id"]), released_label, f"{variant}_{word}",
                                                          submethod, g)
                        seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
                        samples.append((key, {"png": _stand_in_png(r["path"], seed),
                                              "json": json.dumps(meta).encode()}))
                name = f"shard-{released_label}-{variant}-{word.replace('_', '-')}-{submethod}-00000.tar"
                shards.append(str(write_shard(folder / "shards" / name, samples)))
        import_synthetic(shards, store_root, table)
    return {"synthetic_store": str(store_root / variant),
            **({"held_out_avoids_store": str(store_root)} if base.get("held_out_avoids_store") else {})}
