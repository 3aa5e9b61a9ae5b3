"""How long `dermsynth --help` and `dermsynth version` take to start, against a reference in the
same run: a process that imports what the command line used to import before it printed
anything (the report, the experiment runner, the encoders: torch, timm, torchvision,
pandas), i.e. the start-up cost every command paid before imports were made lazy.

    .venv/bin/python bench/cli_startup.py [--repeat 5]

Prints the median wall time of each, their ratio, the CPU model and thread count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from dermsynth.models.precision_rule import cpu_name

EAGER = ("import dermsynth.analysis.report, dermsynth.experiments.runner, dermsynth.models.encoders, "
         "dermsynth.data.splits, dermsynth.generate.backends.registry")


def median_seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    py = sys.executable
    cli = [py, "-c", "from dermsynth.cli import main; import sys; sys.argv[0] = 'dermsynth'; main()"]
    rows = {
        "python -c pass (interpreter)": median_seconds([py, "-c", "pass"], args.repeat),
        "reference: the eager imports": median_seconds([py, "-c", EAGER], args.repeat),
        "dermsynth --help": median_seconds([*cli, "--help"], args.repeat),
        "dermsynth version": median_seconds([*cli, "version"], args.repeat),
    }
    print(f"CPU: {cpu_name()}, {os.cpu_count()} threads; median of {args.repeat} runs")
    for name, sec in rows.items():
        print(f"  {name:32s} {sec:6.2f} s")
    ref = rows["reference: the eager imports"]
    print(f"--help starts {ref / rows['dermsynth --help']:.1f}× faster than the eager imports alone")


if __name__ == "__main__":
    main()
