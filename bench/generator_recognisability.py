"""Does a classifier trained on real images recognise the built-in generator's classes?

Trains the built-in generator for a CPU budget on the demo training pool, generates
text-to-image and inpainted images per class, and scores them with a classifier trained on
real images only; prints accuracy on real test images and on each method's synthetic images
next to chance (1/9).

Usage: python bench/generator_recognisability.py [--minutes 3] [--per-class 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch

from dermsynth.data.cache import cache_images
from dermsynth.generate.builtin import BuiltinConfig, generate_method, load_builtin, train_builtin
from dermsynth.train.loop import fit, predict
from dermsynth.train.run import load_split
from dermsynth.train.spec import RunSpec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dermsynth-gen-"))
    spec = RunSpec(dataset="demo", demo_n_per_class=200, n_test=40, n_val=20, image_size=32, backbone="test_resnet",
                   max_epochs=30, patience=6, batch_size=32, cache_dir=str(work / "cache"))
    split = load_split(spec)
    classes = sorted(split.table["label"].unique())
    pool = split.pool
    c32 = cache_images(pool, 32, work / "cache", progress=False)
    t0 = time.perf_counter()
    summary = train_builtin(c32.array, list(pool.set_index("id").loc[c32.ids, "label"]), work / "gen",
                            classes=classes, max_steps=100_000, max_minutes=args.minutes,
                            config=BuiltinConfig(block_out_channels=(16, 32, 64)), progress=False)
    print(f"generator: {summary['steps']} steps in {time.perf_counter() - t0:.0f} s, "
          f"loss {summary['first_loss']:.3f} → {summary['last_loss']:.3f}")
    model = load_builtin(work / "gen")

    def tensors(t):
        c = cache_images(t, 32, work / "cache", progress=False)
        x = torch.from_numpy(np.ascontiguousarray(c.array)).permute(0, 3, 1, 2).contiguous()
        y = torch.tensor([classes.index(v) for v in t.set_index("id").loc[c.ids, "label"]])
        return x, y

    (tx, ty), (vx, vy), (sx, sy) = tensors(pool), tensors(split.val), tensors(split.test)
    clf = timm.create_model("test_resnet", num_classes=len(classes))
    torch.manual_seed(0)
    fit(clf, tx, ty, vx, vy, spec, torch.device("cpu"), progress=False)
    real_acc = float((predict(clf, sx, spec, torch.device("cpu")).argmax(1) == sy.numpy()).mean())
    print(f"classifier trained on {len(tx)} real images: real test accuracy {real_acc:.3f} (chance {1 / 9:.3f})")
    refs_by_class = {c: pool[pool["label"] == c].head(args.per_class) for c in classes}
    for method in ("text-to-image", "inpaint", "in-then-outpaint"):
        labels, imgs = [], []
        t1 = time.perf_counter()
        for c in classes:
            refs = refs_by_class[c]
            arr = cache_images(refs, 32, work / "cache", progress=False).array
            seeds = list(range(len(refs)))
            imgs.append(generate_method(model, method, [c] * len(refs), seeds, arr, steps=args.steps,
                                        guidance=args.guidance))
            labels += [classes.index(c)] * len(refs)
        x = torch.from_numpy(np.concatenate(imgs)).permute(0, 3, 1, 2).contiguous()
        acc = float((predict(clf, x, spec, torch.device("cpu")).argmax(1) == np.array(labels)).mean())
        print(f"{method:<17} {len(labels)} synthetic images: recognised {acc:.3f} "
              f"({len(labels) / (time.perf_counter() - t1):.1f} img/s to generate)")


if __name__ == "__main__":
    main()
