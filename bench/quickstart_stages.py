"""Time the quickstart end to end and print each stage's share.

Usage: python bench/quickstart_stages.py [OUT]   (OUT is deleted first; default /tmp/dermsynth-qs-bench)
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from dermsynth.analysis.report import build_report
from dermsynth.experiments.presets import preset_path
from dermsynth.experiments.runner import run_experiment
from dermsynth.experiments.spec import load_experiment


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/dermsynth-qs-bench")
    shutil.rmtree(out, ignore_errors=True)
    spec = load_experiment(preset_path("quickstart"))
    spec = spec.model_copy(update={"base": {**spec.base, "cache_dir": str(out / "cache")}})
    t0 = time.perf_counter()
    res = run_experiment(spec, out, progress=False)
    t1 = time.perf_counter()
    build_report(out)
    stages = dict(res["timings"])
    stages.pop("stages", None)  # the sum of the task kinds listed beside it
    stages["report"] = time.perf_counter() - t1
    total = time.perf_counter() - t0
    stages["other (data, audit)"] = total - sum(stages.values())
    print(f"quickstart total: {total:.0f} s ({total / 60:.1f} min) for {res['runs']} runs")
    for name, secs in stages.items():
        print(f"  {name:<22} {secs:7.1f} s  {100 * secs / total:5.1f} %")


if __name__ == "__main__":
    main()
