"""Built-in generator quality per CPU minute: what limits it, and what more minutes buy.

For each training setting (prediction target, width, batch, lr …) the generator trains on the
demo training pool for a CPU-minute budget, continuing to the next budget (a curve, not a
restart); at each budget, text-to-image samples (20 per class) are scored by one classifier
trained on real images only (`audits.recognisability`): accuracy per class (chance 1/9), and
FID/KID against the real test images in that classifier's feature space (a domain encoder;
ImageNet Inception is not available offline and judges skin poorly). Sampling settings
(denoising steps, guidance) are compared on each trained model, and inpainting is scored too.

    python bench/generator_quality.py --settings x0 v eps --minutes 3
    python bench/generator_quality.py --settings v --minutes 1 3 6 10 15 --figure docs/generator_quality.png
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermsynth.analysis.quality import fid, kid
from dermsynth.audits.recognisability import real_only_classifier, recognisability
from dermsynth.data.cache import cache_images
from dermsynth.data.splits import load_split
from dermsynth.data.synthetic_store import read_manifest
from dermsynth.generate.backends.builtin import BuiltinBackend
from dermsynth.generate.builtin.train import BuiltinConfig, train_builtin
from dermsynth.generate.runner import run_generation
from dermsynth.models.precision_rule import cpu_name
from dermsynth.train.probe import features
from dermsynth.train.run import images_tensor
from dermsynth.train.spec import RunSpec

SETTINGS = {
    "x0": {"prediction_type": "sample"},  # the former default; all: (32, 64, 64), batch 32, lr 2e-3
    "v": {"prediction_type": "v_prediction"},
    "eps": {"prediction_type": "epsilon"},
    "x0-b32": {"batch_size": 32},
    "v-b32": {"prediction_type": "v_prediction", "batch_size": 32},
    "v-wide": {"prediction_type": "v_prediction", "block_out_channels": (48, 96, 96)},
    "v-lr4e-3": {"prediction_type": "v_prediction", "lr": 4e-3},
}


def embed(clf, table: pd.DataFrame, cache: Path) -> np.ndarray:
    cached = cache_images(table, clf.spec.image_size, cache)
    return features(clf.model, images_tensor(cached, table["id"]), clf.spec, clf.device)


def score(clf, split, store: Path, cache: Path, real_feats: np.ndarray) -> dict:
    table = recognisability(split, store, clf.spec, classifier=clf)
    per_class = table.attrs["per_class"]
    out = {}
    for method, rows in per_class.groupby("group"):
        out[f"{method}:mean"] = float(rows["accuracy"].mean())
        out[f"{method}:min"] = float(rows["accuracy"].min())
        out[f"{method}:worst"] = rows.loc[rows["accuracy"].idxmin(), "class"]
    syn = read_manifest(store)
    t2i = syn[syn["method"] == "text-to-image"].assign(id=lambda d: d["synth_id"])
    if len(t2i):
        f = embed(clf, t2i, cache)
        out["fid"], out["kid"] = fid(real_feats, f), kid(real_feats, f, subset_size=min(100, len(f), len(real_feats)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--settings", nargs="+", default=["x0", "v", "eps"], choices=sorted(SETTINGS))
    ap.add_argument("--minutes", type=float, nargs="+", default=[3.0], help="cumulative CPU-minute budgets")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--samplers", nargs="+", default=["10:6", "25:6", "25:3"], help="steps:guidance")
    ap.add_argument("--out", type=Path, default=None, help="CSV of every row")
    ap.add_argument("--figure", type=Path, default=None)
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} threads, torch {torch.get_num_threads()} threads")
    work = Path(tempfile.mkdtemp(prefix="dermsynth-genq-"))
    cache = work / "cache" / "images"
    spec = RunSpec(dataset="demo", demo_n_per_class=120, demo_size=64, n_test=40, n_val=20, image_size=32,
                   backbone="test_resnet", max_epochs=30, patience=6, lr=3e-3, batch_size=16,
                   cache_dir=str(work / "cache"))  # the quickstart's data and classifier
    split = load_split(spec.split_spec())
    classes = sorted(split.table["label"].unique())
    clf = real_only_classifier(split, spec)
    print(f"real-only classifier: real test accuracy {100 * clf.real_row['accuracy']:.1f} % (chance 11.1 %)")
    real_feats = embed(clf, split.test, cache)
    pool = split.pool
    c32 = cache_images(pool, 32, cache)
    labels = list(pool.set_index("id").loc[c32.ids, "label"])
    refs = pool.groupby("label", sort=True).head(args.per_class)
    rows = []
    for name in args.settings:
        gen_dir, spent = work / f"gen-{name}", 0.0
        for budget in sorted(args.minutes):
            t0 = time.perf_counter()
            summary = train_builtin(c32.array, labels, gen_dir, classes=classes, max_steps=10**6,
                                    max_minutes=budget - spent, checkpoint_every=20,
                                    config=BuiltinConfig(**SETTINGS[name]))
            spent = budget
            train_s = time.perf_counter() - t0
            for sampler in args.samplers:
                steps, guidance = (float(x) for x in sampler.split(":"))
                store = work / f"store-{name}-{budget}-{sampler.replace(':', '_')}"
                backend = BuiltinBackend(gen_dir, steps=int(steps), guidance=guidance)
                methods = ["text-to-image"] + (["inpaint"] if sampler == args.samplers[0] else [])
                ips = []
                for method in methods:
                    res = run_generation(backend, refs, method, 1, store, split=split, batch_size=64)
                    ips.append(res.images_per_second)
                row = {"setting": name, "minutes": budget, "steps": summary["steps"], "loss": summary["last_loss"],
                       "train_s": round(train_s), "sampler": sampler, "t2i_img_s": ips[0],
                       **score(clf, split, store, cache, real_feats)}
                rows.append(row)
                print(pd.DataFrame([row]).to_string(index=False, float_format=lambda v: f"{v:.3g}"), flush=True)
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        table.to_csv(args.out, index=False)
    if args.figure:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3.6))
        ax = fig.subplots()
        for (name, sampler), g in table.groupby(["setting", "sampler"]):
            ax.plot(g["minutes"], 100 * g["text-to-image:mean"], "o-", label=f"{name}, {sampler} (mean)")
            ax.plot(g["minutes"], 100 * g["text-to-image:min"], "x--", alpha=0.6, label=f"{name}, {sampler} (worst)")
        ax.axhline(100 / len(classes), color="#999", lw=1, ls=":", label="chance")
        ax.set_xlabel("CPU minutes of generator training (2 cores)")
        ax.set_ylabel("text-to-image recognised (%)")
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
        fig.savefig(args.figure, dpi=150, bbox_inches="tight")
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
