"""Training throughput: dermsynth (fp32, bf16, and its defaults) vs the authors' fastai stack.

One script, one machine, one run: the same backbone, data, resolution, batch size, epochs and
augmentation (the paper's transforms = fastai's ``aug_transforms()``) for every stack, and every
figure is images trained per second of the whole fit, **validation included** (each stack
validates after every epoch). The batch size defaults to the authors' tiers for the training
set's size (``auto_batch_size``: what both stacks use by default in the paper's protocol).
dermsynth reads its decoded-image cache (built before the clock starts, once per machine);
fastai decodes and resizes the JPEGs itself, as the authors' code did, with its default loader
workers. "default" is dermsynth with ``precision = "auto"`` (the probe's choice, printed).
``--profile`` times one epoch of dermsynth's loop part by part (after a warm-up epoch).

Data: real Fitzpatrick 17k images (../shared/data/fitzpatrick17k, top-9 classes) when present,
else the demo set. fastai is measured only when installed (its own virtual environment: it may
pin another torch; see the README's bench section).

Usage: python bench/train_throughput.py [--backbone resnet18] [--size 64] [--epochs 3] [--batch auto] [--profile]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dermsynth.data.cache import cache_images
from dermsynth.data.registry import load_dataset
from dermsynth.data.splits import make_split
from dermsynth.models.backbones import create_backbone
from dermsynth.models.precision_rule import cpu_name
from dermsynth.progress import progress_bars
from dermsynth.train.image_source import batches
from dermsynth.train.loop import OPTIMIZERS, _epoch_order, fit, normalizer, predict, to_input
from dermsynth.train.run import resolve_precision
from dermsynth.train.spec import RunSpec, auto_batch_size
from dermsynth.train.transforms import Augmentation

F17K = Path(__file__).resolve().parents[2] / "shared" / "data" / "fitzpatrick17k"


def data():
    if (F17K / "fitzpatrick17k.csv").exists():
        return load_dataset("fitzpatrick17k", F17K, classes="top-9"), "fitzpatrick17k top-9 (real)"
    return load_dataset("demo", None, n_per_class=200), "demo"


def fastai_run(train, val, test, backbone, size, batch, epochs):
    """(img/s with validation, test accuracy, loader workers) of the authors' stack with its
    defaults, or None without fastai."""
    try:
        from fastai.vision.all import ImageDataLoaders, Resize, accuracy, aug_transforms, vision_learner
    except ImportError:
        return None
    df = pd.concat([train.assign(is_valid=False), val.assign(is_valid=True)])[["path", "label", "is_valid"]]
    dls = ImageDataLoaders.from_df(df, path="/", fn_col="path", label_col="label", valid_col="is_valid", bs=batch,
                                   item_tfms=Resize(size), batch_tfms=aug_transforms())
    learn = vision_learner(dls, backbone, pretrained=False, metrics=accuracy)
    t0 = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit(epochs, 1e-3)
    secs = time.perf_counter() - t0
    tdl = learn.dls.test_dl(test["path"].tolist())
    with learn.no_bar():
        preds, _ = learn.get_preds(dl=tdl)
    vocab = list(learn.dls.vocab)
    acc = float(np.mean([vocab[i] == lab for i, lab in zip(preds.argmax(1).tolist(), test["label"], strict=True)]))
    return len(train) * epochs / secs, acc, dls.train.num_workers


def profile_epoch(model, tx, ty, vx, vy, spec: RunSpec) -> dict[str, float]:
    """Seconds per part of one training epoch plus its validation, built from the loop's own
    pieces (batches, augmentation, input conversion, forward, backward, optimizer, predict)."""
    gen = torch.Generator().manual_seed(0)
    augmentation = Augmentation(spec.augmentation(), int(ty.max()) + 1)
    opt = OPTIMIZERS.get(spec.optimizer)(list(model.parameters()), spec.lr, spec.weight_decay)
    norm, bf16 = normalizer(model, "cpu"), spec.precision == "bf16"
    model.to(memory_format=torch.channels_last)
    parts = dict.fromkeys(["data (batches)", "augment + input", "forward", "backward", "optimizer", "evaluation"], 0.0)
    bs = spec.batch_size
    for _epoch in range(2):  # the first warms up (allocations, oneDNN kernel choice)
        parts = dict.fromkeys(parts, 0.0)
        model.train()
        it = batches(tx, _epoch_order(ty, "uniform", gen), bs, len(tx) // bs)
        while True:
            t0 = time.perf_counter()
            try:
                idx, raw = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            xb, yb = augmentation(raw, ty[idx], gen)
            xb = to_input(xb, norm, True, None, None)
            t2 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(xb), yb)
            t3 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t4 = time.perf_counter()
            opt.step()
            loss.item()
            t5 = time.perf_counter()
            for k, a, b in zip(parts, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=False):
                parts[k] += b - a
        t6 = time.perf_counter()
        probs = predict(model, vx, spec, torch.device("cpu"))
        F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-8)), vy)
        parts["evaluation"] = time.perf_counter() - t6
    return parts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", default="auto", help="'auto': the authors' tiers for the training set's size")
    ap.add_argument("--precisions", nargs="*", default=["fp32", "bf16", "auto"], help="dermsynth runs to time")
    ap.add_argument("--profile", action="store_true", help="time one epoch of dermsynth's loop part by part")
    ap.add_argument("--no-fastai", action="store_true")
    args = ap.parse_args()
    table, name = data()
    split = make_split(table, 40, 40)
    train, val, test = split.pool, split.val, split.test
    classes = sorted(table["label"].unique())
    batch = auto_batch_size(len(train)) if args.batch == "auto" else int(args.batch)
    cached = cache_images(pd.concat([train, val, test]), args.size)
    idx = {c: i for i, c in enumerate(classes)}

    def xy(t):
        x = torch.from_numpy(np.ascontiguousarray(cached.array[cached.index_of(t["id"])])).permute(0, 3, 1, 2)
        return x.contiguous(), torch.tensor(t["label"].map(idx).to_numpy())

    (tx, ty), (vx, vy), (sx, sy) = xy(train), xy(val), xy(test)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}")
    print(f"data: {name}, {len(train)} train / {len(val)} val / {len(test)} test images, {args.size} px, "
          f"{args.backbone}, batch {batch} ({args.batch}), {args.epochs} epochs, paper's transforms on")
    cpu = torch.device("cpu")
    ours: dict[str, tuple[float, float]] = {}
    for precision in args.precisions:
        spec = RunSpec(backbone=args.backbone, image_size=args.size, batch_size=batch, max_epochs=args.epochs,
                       patience=args.epochs, transforms=True, precision=precision)
        torch.manual_seed(0)
        model = create_backbone(args.backbone, len(classes), False, None, args.size)
        with tempfile.TemporaryDirectory() as probe_cache:  # a fresh probe, not one cached earlier
            spec = spec.model_copy(update={"cache_dir": probe_cache})
            spec, used, why = resolve_precision(spec, model, len(classes), cpu)
        res = fit(model, tx, ty, vx, vy, spec, cpu)
        acc = float((predict(model, sx, spec, cpu).argmax(1) == sy.numpy()).mean())
        label = "default" if precision == "auto" else precision
        ours[label] = (res.images_per_second, acc)
        print(f"[{label:>7}] dermsynth {res.images_per_second:6.1f} img/s with validation "
              f"({res.train_images_per_second:6.1f} training steps only), {used}: {why}; test acc {acc:.3f}")
        if args.profile and precision == "auto":
            torch.manual_seed(0)
            parts = profile_epoch(create_backbone(args.backbone, len(classes), False, None, args.size),
                                  tx, ty, vx, vy, spec)
            total = sum(parts.values())
            print(f"  one epoch of dermsynth's loop ({used}, {len(tx) // batch} steps + validation): {total:.2f} s")
            for k, v in parts.items():
                print(f"    {k:<16} {v:6.2f} s  {100 * v / total:5.1f} %")
    if args.no_fastai:
        return
    torch.manual_seed(0)
    fa = fastai_run(train, val, test, args.backbone, args.size, batch, args.epochs)
    if fa is None:
        print("fastai not installed (see the README's bench section): no fastai comparison")
        return
    print(f"[   fp32] fastai    {fa[0]:6.1f} img/s with validation ({fa[2]} loader workers, its default); "
          f"test acc {fa[1]:.3f}")
    print("dermsynth ÷ fastai, validation included:")
    for label, (ips, acc) in ours.items():
        print(f"  {label:>7}: {ips / fa[0]:4.2f}×  (test acc {acc:.3f} vs fastai {fa[1]:.3f})")


if __name__ == "__main__":
    with progress_bars(False):
        main()
