"""Do bf16 training runs stay finite on this CPU, on oneDNN's AMX kernels, on its AVX512-BF16
kernels (the cap dermsynth sets on a CPU with AMX) and in fp32?

Each setting trains N tiny demo runs one after another in a fresh process (the variable that caps
oneDNN must be set before torch makes its first kernel) and counts the runs that diverged (NaN).

    python bench/bf16_kernels.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from dermsynth.cpu import ONEDNN_ISA, WITHOUT_AMX, cpu_name, native_bf16_flags

CHILD = """
import sys
from dermsynth.train.run import run_training
from dermsynth.train.spec import RunSpec
bad = 0
for seed in range(int(sys.argv[2])):
    try:
        run_training(RunSpec(dataset="demo", root=sys.argv[1] + "/demo", n_real=4, n_test=5, n_val=4, image_size=16,
                             backbone="test_resnet", max_epochs=3, seed=seed, precision=sys.argv[3],
                             cache_dir=sys.argv[1] + "/cache"))
    except Exception:
        bad += 1
print(bad)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}; threads: {os.cpu_count()}; native bf16 flags: {native_bf16_flags() or 'none'}")
    settings = [("bf16, every kernel oneDNN picks (AMX where present)", "bf16", "ALL"),
                (f"bf16, oneDNN capped at {WITHOUT_AMX}", "bf16", WITHOUT_AMX), ("fp32", "fp32", "ALL")]
    with tempfile.TemporaryDirectory() as tmp:
        for name, precision, isa in settings:
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, tmp, str(args.runs), precision], text=True,
                                 capture_output=True, env={**os.environ, ONEDNN_ISA: isa}, check=True).stdout
            print(f"{name:55s} diverged {int(out.split()[-1]):3d} of {args.runs} "
                  f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
