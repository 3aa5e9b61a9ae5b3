"""The released-images import (``data import-synthetic``) against a plain webdataset read of the
same shards, and its peak memory at two shard sizes.

Shards are made here in the released 1M layout: 512 × 512 PNGs (noise over a gradient, about
the released files' size class) with the authors' json. Each measurement runs in a fresh
process, so its peak resident memory (ru_maxrss) is its own:

- ``plain``: ``webdataset.WebDataset(shards)`` iterated, each sample's bytes touched (no decode);
- ``import``: ``import_synthetic`` into a new folder (PNG verified, written, manifest committed);
- ``import`` again on a shard three times as large: its peak must not grow with the shard.

    .venv/bin/python bench/import_synthetic.py [--images 150] [--repeat 3]

Prints the CPU model and thread count, each median time, the ratio import / plain, and the peak
memory of each process.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from dermsynth.data.shard_stream import write_shard
from dermsynth.models.precision_rule import cpu_name

# Both children import the same modules first, so the baseline peak (after imports) is comparable;
# each prints its loop's seconds, its peak RSS after imports and at the end (KiB).
PRELUDE = ("import resource, sys, time, pandas as pd, webdataset as wds\n"
           "from dermsynth.data.synthetic_import import import_synthetic\n"
           "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
           "t0 = time.perf_counter()\n")
CHILD = {
    "plain": "n = 0\n"
             "for s in wds.WebDataset(sys.argv[2:], shardshuffle=False):\n"
             "    n += len(s['png']) + len(s['json'])\n",
    "import": "import_synthetic(sys.argv[3:], sys.argv[2], pd.read_csv(sys.argv[1]))\n",
}
PEAK = ("\nprint(time.perf_counter() - t0, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")


def make_shard(path: Path, refs: list[str], n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, 512, dtype=np.float32)[None, :, None]
    samples = []
    for i in range(n):
        arr = np.clip(ramp + rng.normal(0, 12, (512, 512, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        md5 = refs[i % len(refs)]
        key = f"psoriasis_finetune_text_to_image_text_to_image_generations1_{i // len(refs):02d}_{md5}"
        meta = {"name": f"{key}.png", "md5hash": md5, "label": "psoriasis", "method": "finetune_text_to_image",
                "submethod": "text-to-image", "generation_num": f"{i // len(refs):02d}", "tag": "generations1"}
        samples.append((key, {"png": buf.getvalue(), "json": json.dumps(meta).encode()}))
    return write_shard(path, samples)


def run(kind: str, args: list[str]) -> tuple[float, int, int]:
    """(loop seconds, peak RSS after imports, peak RSS at the end) of one fresh process."""
    out = subprocess.run([sys.executable, "-c", PRELUDE + CHILD[kind] + PEAK, *args], check=True,
                         capture_output=True, text=True)
    seconds, before, after = out.stdout.split()[-3:]
    return float(seconds), int(before), int(after)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=150, help="Images in the small shard (the large has 3×).")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}; threads: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        refs = [f"{i:032x}" for i in range(50)]
        pd_csv = tmp / "refs.csv"
        pd_csv.write_text("id,label,skin_type\n" + "".join(f"{r},psoriasis,3\n" for r in refs))
        small = make_shard(tmp / "shard-psoriasis-finetune-text-to-image-text-to-image-00000.tar", refs, args.images, 0)
        large = make_shard(tmp / "shard-psoriasis-finetune-text-to-image-text-to-image-00001.tar", refs,
                           3 * args.images, 1)
        rows = {}
        for name, kind, shard in (("plain, small shard", "plain", small), ("import, small shard", "import", small),
                                  ("import, large shard", "import", large)):
            times, growth = [], []
            for r in range(args.repeat):
                extra = [str(pd_csv)] if kind == "plain" else [str(pd_csv), str(tmp / f"out-{name[-11:-6]}-{r}")]
                t, before, after = run(kind, [*extra, str(shard)])
                times.append(t)
                growth.append(after - before)
            rows[name] = (statistics.median(times), max(growth))
            print(f"{name:22s} {shard.stat().st_size / 2**20:7.1f} MiB  median {rows[name][0]:6.2f} s  "
                  f"peak RSS above the imports' {rows[name][1] / 1024:6.1f} MiB")
        small_ratio = rows["import, small shard"][0] / rows["plain, small shard"][0]
        print(f"ratio import / plain read (small shard): {small_ratio:.2f}")
        print(f"peak RSS growth, large / small shard (import): "
              f"{rows['import, large shard'][1] / max(rows['import, small shard'][1], 1):.2f} (shard 3× larger)")


if __name__ == "__main__":
    main()
