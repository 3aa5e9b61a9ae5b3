"""Training throughput: dermsynth vs a bare forward/backward loop (the ceiling) and vs fastai.

Same backbone, data, resolution, batch size and epochs for every stack, in one script.
Data: real Fitzpatrick 17k images (../shared/data/fitzpatrick17k, top-9 classes) when present,
else the demo set. fastai is measured only when installed (pip install -e .[bench]).

Usage: python bench/train_throughput.py [--backbone resnet18] [--size 64] [--epochs 2] [--batch 32]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
import torch.nn.functional as F

from dermsynth.data.cache import cache_images
from dermsynth.data.registry import load_dataset
from dermsynth.data.splits import make_split
from dermsynth.train.loop import fit, predict
from dermsynth.train.spec import RunSpec

F17K = Path(__file__).resolve().parents[2] / "shared" / "data" / "fitzpatrick17k"


def data():
    if (F17K / "fitzpatrick17k.csv").exists():
        return load_dataset("fitzpatrick17k", F17K, classes="top-9"), "fitzpatrick17k top-9 (real)"
    return load_dataset("demo", None, n_per_class=200), "demo"


def bare_loop(backbone, n_classes, size, batch, steps, precision):
    model = timm.create_model(backbone, num_classes=n_classes).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, n_classes, (batch,))
    model.train()
    t0 = None
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def fastai_run(train, val, test, classes, backbone, size, batch, epochs):
    try:
        from fastai.vision.all import ImageDataLoaders, Resize, accuracy, aug_transforms, vision_learner
    except ImportError:
        return None
    df = pd.concat([train.assign(is_valid=False), val.assign(is_valid=True)])[["path", "label", "is_valid"]]
    dls = ImageDataLoaders.from_df(df, path="/", fn_col="path", label_col="label", valid_col="is_valid", bs=batch,
                                   item_tfms=Resize(size), batch_tfms=aug_transforms(), num_workers=0)
    learn = vision_learner(dls, backbone, pretrained=False, metrics=accuracy)
    t0 = time.perf_counter()
    learn.fit(epochs, 1e-3)
    secs = time.perf_counter() - t0
    tdl = learn.dls.test_dl(test["path"].tolist())
    preds, _ = learn.get_preds(dl=tdl)
    vocab = list(learn.dls.vocab)
    acc = float(np.mean([vocab[i] == lab for i, lab in zip(preds.argmax(1).tolist(), test["label"], strict=True)]))
    return len(train) * epochs / secs, acc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--precisions", nargs="*", default=["fp32", "bf16"], help="dermsynth runs to time")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    table, name = data()
    split = make_split(table, 40, 40)
    train, val, test = split.pool, split.val, split.test
    classes = sorted(table["label"].unique())
    cached = cache_images(pd.concat([train, val, test]), args.size, progress=False)
    idx = {c: i for i, c in enumerate(classes)}

    def xy(t):
        x = torch.from_numpy(np.ascontiguousarray(cached.array[cached.index_of(t["id"])])).permute(0, 3, 1, 2)
        return x.contiguous(), torch.tensor(t["label"].map(idx).to_numpy())

    (tx, ty), (vx, vy), (sx, sy) = xy(train), xy(val), xy(test)
    print(f"data: {name}, {len(train)} train / {len(val)} val / {len(test)} test images, {args.size} px, "
          f"{args.backbone}, batch {args.batch}, {args.epochs} epochs, {torch.get_num_threads()} threads")
    for precision in args.precisions:
        spec = RunSpec(backbone=args.backbone, image_size=args.size, batch_size=args.batch, max_epochs=args.epochs,
                       patience=args.epochs, transforms=True, precision=precision)
        model = timm.create_model(args.backbone, num_classes=len(classes))
        torch.manual_seed(0)
        res = fit(model, tx, ty, vx, vy, spec, torch.device("cpu"), progress=False)
        acc = float((predict(model, sx, spec, torch.device("cpu")).argmax(1) == sy.numpy()).mean())
        steps = max(1, len(tx) // args.batch)
        ceiling = bare_loop(args.backbone, len(classes), args.size, args.batch, min(steps, 30), precision)
        ours = res.train_images_per_second
        print(f"[{precision}] dermsynth {ours:6.1f} img/s (with validation {res.images_per_second:6.1f}), "
              f"bare loop {ceiling:6.1f} img/s → {100 * ours / ceiling:5.1f} % of the ceiling; test acc {acc:.3f}")
    fa = fastai_run(train, val, test, classes, args.backbone, args.size, args.batch, args.epochs)
    if fa is None:
        print("fastai not installed (pip install -e .[bench]): no fastai comparison")
    else:
        print(f"[fp32] fastai {fa[0]:6.1f} img/s (validation included), test acc {fa[1]:.3f}")


if __name__ == "__main__":
    main()
