"""Linear-probe triage of a fig3-shaped grid vs training its cells.

Builds the fig3_paper rehearsal (stand-in data and models; 6 n_real × 2 transforms × (1 + 3
methods × 2 generators) × SEEDS cells), makes its stores, then times `triage` (features once,
one logistic regression per cell) against training a few cells for real, extrapolated to the
grid. Goal: ≤ 60 s of probing for 240 cells on 2 cores.

    python bench/triage_speed.py [--seeds 3] [--trained 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from dermsynth.experiments.presets import preset_path
from dermsynth.experiments.rehearsal import rehearse
from dermsynth.experiments.runner import planned_runs, prepare_stages
from dermsynth.experiments.spec import load_experiment
from dermsynth.experiments.triage import triage
from dermsynth.train.run import run_training


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trained", type=int, default=3, help="cells trained for real, for the reference")
    ap.add_argument("--work", help="reuse this folder's stores (default: a new temporary folder)")
    args = ap.parse_args()
    with open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), platform.processor())
    print(f"CPU: {cpu}, {os.cpu_count()} threads")
    work = Path(args.work or tempfile.mkdtemp(prefix="dermsynth-triage-"))
    spec = rehearse(load_experiment(preset_path("fig3_paper")), seeds=args.seeds, cache_dir=str(work / "cache"))
    t0 = time.perf_counter()
    prepare_stages(spec, work / "exp")
    print(f"stores made in {time.perf_counter() - t0:.0f} s (not part of either side)")
    res = triage(spec, work / "exp", work / "triage")
    probing = res["seconds"]  # the stages are cached by now: this is features + probes
    runs = [r for r in planned_runs(spec, work / "exp") if r.synthetic_per_real][: args.trained]
    t1 = time.perf_counter()
    for r in runs:
        run_training(r)
    per_cell = (time.perf_counter() - t1) / len(runs)
    print(f"triage: {res['cells']} cells in {probing:.1f} s (features {res['feature_seconds']:.1f} s) → "
          f"{probing / res['cells']:.3f} s per cell")
    print(f"training (reference): {per_cell:.1f} s per cell → {per_cell * res['cells']:.0f} s for the grid; "
          f"triage is {per_cell * res['cells'] / probing:.0f}× faster")


if __name__ == "__main__":
    main()
