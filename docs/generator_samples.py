"""A sample sheet of the built-in generator for the README: per class, a real reference, its
inpainted version (centre regenerated) and text-to-image samples, from a store written by
bench/generator_quality.py (or any store of the built-in generator).

    python docs/generator_samples.py STORE [--out docs/generator_samples.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from dermsynth.data.images import load_array
from dermsynth.data.synthetic_store import read_manifest, read_references


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/generator_samples.png"))
    ap.add_argument("--t2i", type=int, default=4)
    args = ap.parse_args()
    man = read_manifest(args.store)
    refs = read_references(args.store).set_index("id")
    rows = []
    for label, g in man.groupby("label", sort=True):
        inp = g[g["method"] == "inpaint"].head(1)
        t2i = g[g["method"] == "text-to-image"].head(args.t2i)
        size = int(np.asarray(Image.open(t2i["path"].iloc[0])).shape[0])
        tiles = [load_array(refs.loc[inp["ref_id"].iloc[0], "path"], size), np.asarray(Image.open(inp["path"].iloc[0]))]
        tiles += [np.asarray(Image.open(p).convert("RGB")) for p in t2i["path"]]
        gap = np.full((size, 4, 3), 255, np.uint8)
        rows.append(np.concatenate([t for tile in tiles for t in (tile, gap)], axis=1))
        print(label)
    sheet = np.concatenate([np.concatenate([r, np.full((4, r.shape[1], 3), 255, np.uint8)]) for r in rows])
    Image.fromarray(sheet).resize((sheet.shape[1] * 3, sheet.shape[0] * 3), Image.Resampling.NEAREST).save(args.out)
    print(f"rows (classes, alphabetical): real reference | inpainted | {args.t2i} text-to-image → {args.out}")


if __name__ == "__main__":
    main()
