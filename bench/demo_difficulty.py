"""How hard is the demo task? Test accuracy vs real images per class (the issue's target:
resnet18 from scratch at 64 px lands between ~35 % and ~75 % with 16 per class, clearly
higher with 200). Prints one line per (n_real, seed) and the mean per n_real.

Usage: python bench/demo_difficulty.py [--backbone resnet18] [--size 64] [--n 16 64 200] [--seeds 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dermsynth.train.run import run_training
from dermsynth.train.spec import RunSpec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n", type=int, nargs="+", default=[16, 64, 200])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()
    per_class = max(args.n) + 80
    for n in args.n:
        accs = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            spec = RunSpec(dataset="demo", demo_n_per_class=per_class, n_real=n, seed=seed, backbone=args.backbone,
                           image_size=args.size, batch_size=16 if n <= 32 else 32, max_epochs=args.epochs,
                           patience=8)
            rec = run_training(spec)
            accs.append(rec["metrics"]["accuracy"])
            print(f"n_real={n:4d} seed={seed} accuracy={accs[-1]:.3f} epochs={rec['fit']['epochs_run']} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        print(f"n_real={n:4d} mean accuracy {np.mean(accs):.3f} (chance 0.111)", flush=True)


if __name__ == "__main__":
    main()
