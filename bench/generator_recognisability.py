"""Does a classifier trained on real images recognise the built-in generator's classes?

Trains the built-in generator on the demo training pool for a step (or CPU-minute) budget,
generates images per method for the first references of each class, and scores them with
`dermsynth.analysis.recognisability` (a classifier trained on real pool images only):
accuracy on real test images and per method, next to chance (1/9), with an exact binomial
test against chance. Several guidance scales can be compared on the one trained model.

Usage: python bench/generator_recognisability.py [--train-steps 550] [--minutes M]
       [--guidance 4 6] [--steps 10] [--per-class 20] [--sheet samples.png]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dermsynth.audits.recognisability import recognisability
from dermsynth.data.cache import cache_images
from dermsynth.data.splits import load_split
from dermsynth.data.synthetic_store import read_manifest
from dermsynth.generate.backends.builtin import BuiltinBackend
from dermsynth.generate.builtin.train import BuiltinConfig, train_builtin
from dermsynth.generate.runner import run_generation
from dermsynth.train.spec import RunSpec

METHODS = ("text-to-image", "inpaint", "in-then-outpaint")


def _sheet(store: Path, path: Path, per_row: int = 10) -> None:
    """One row per class of the text-to-image samples, for looking at."""
    man = read_manifest(store)
    man = man[man["method"] == "text-to-image"]
    rows = [np.concatenate([np.asarray(Image.open(p).convert("RGB")) for p in g["path"].head(per_row)], axis=1)
            for _, g in man.groupby("label", sort=True)]
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    grid.resize((grid.width * 2, grid.height * 2), Image.NEAREST).save(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-steps", type=int, default=550)
    ap.add_argument("--minutes", type=float, default=None, help="CPU-minute budget (stops at whichever is first)")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--guidance", type=float, nargs="+", default=[6.0])
    ap.add_argument("--steps", type=int, default=10, help="denoising steps")
    ap.add_argument("--sheet", type=Path, default=None, help="save text-to-image samples (row = class) here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dermsynth-gen-"))
    spec = RunSpec(dataset="demo", demo_n_per_class=200, n_test=40, n_val=20, image_size=32, backbone="test_resnet",
                   max_epochs=30, patience=6, batch_size=32, cache_dir=str(work / "cache"))
    split = load_split(spec.split_spec())
    classes = sorted(split.table["label"].unique())
    pool = split.pool
    c32 = cache_images(pool, 32, work / "cache" / "images")
    t0 = time.perf_counter()
    summary = train_builtin(c32.array, list(pool.set_index("id").loc[c32.ids, "label"]), work / "gen",
                            classes=classes, max_steps=args.train_steps, max_minutes=args.minutes,
                            config=BuiltinConfig(block_out_channels=(16, 32, 64)))
    print(f"generator: {summary['steps']} steps in {time.perf_counter() - t0:.0f} s, "
          f"loss {summary['first_loss']:.3f} → {summary['last_loss']:.3f}")
    refs = pool.groupby("label", sort=True).head(args.per_class)
    for guidance in args.guidance:
        store = work / f"store-g{guidance}"
        backend = BuiltinBackend(work / "gen", steps=args.steps, guidance=guidance)
        for method in METHODS:
            res = run_generation(backend, refs, method, 1, store, split=split, batch_size=64)
            print(f"guidance {guidance}: {method} {res.generated} images at {res.images_per_second:.1f} img/s")
        table = recognisability(split, store, spec)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        if args.sheet is not None:
            _sheet(store, args.sheet.with_name(f"{args.sheet.stem}-g{guidance}{args.sheet.suffix}"))


if __name__ == "__main__":
    main()
