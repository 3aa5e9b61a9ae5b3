"""Peak memory and speed of training from RAM vs streaming from the decoded-image cache.

Prints, per training-set size, the peak RSS of a whole run (each in its own process, so
peaks do not mix) and img/s of the optimisation steps, streamed ÷ in-RAM side by side.
Goal: streamed RSS flat beyond a few batches (plus the OS page cache, which RSS does not
count), streamed img/s ≥ 95 % of in-RAM.

    python bench/memory_streaming.py [--sizes 40 160 640] [--image-size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys
from dermsynth.train.run import run_training
from dermsynth.train.spec import RunSpec
spec = RunSpec(**json.loads(sys.argv[1]))
rec = run_training(spec)
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "img_s": rec["fit"]["train_images_per_second"], "n_train": rec["n_train"]}))
"""


def cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def run(fields: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(fields)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[40, 160, 640], help="real images per class")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"CPU: {cpu()}, {os.cpu_count()} threads; image size {args.image_size} px; test_resnet, 1 epoch")
    work = tempfile.mkdtemp(prefix="dermsynth-mem-")
    print(f"{'n_train':>8} {'RAM MB':>8} {'stream MB':>10} {'ratio':>6} {'RAM img/s':>10} "
          f"{'stream img/s':>13} {'ratio':>6}")
    for n in args.sizes:
        base = dict(dataset="demo", root=f"{work}/demo", demo_n_per_class=n + 20, demo_size=64, n_test=10, n_val=10,
                    n_real=n, image_size=args.image_size, backbone="test_resnet", max_epochs=1, patience=1,
                    batch_size=64, cache_dir=f"{work}/cache", precision="fp32", threads=os.cpu_count())
        run({**base, "stream": False})  # fill the cache first, so neither side pays for decoding
        # alternate the two paths and keep each one's best speed: on a shared machine one run
        # can be 10 % off another of the same configuration
        pairs = [(run({**base, "stream": False}), run({**base, "stream": True, "loader_workers": args.workers}))
                 for _ in range(args.repeats)]
        ram = {**pairs[0][0], "img_s": max(p[0]["img_s"] for p in pairs)}
        streamed = {**pairs[0][1], "img_s": max(p[1]["img_s"] for p in pairs)}
        print(f"{ram['n_train']:>8} {ram['rss_mb']:>8.0f} {streamed['rss_mb']:>10.0f} "
              f"{streamed['rss_mb'] / ram['rss_mb']:>6.2f} {ram['img_s']:>10.0f} {streamed['img_s']:>13.0f} "
              f"{streamed['img_s'] / ram['img_s']:>6.2f}")


if __name__ == "__main__":
    main()
