"""Time the quickstart end to end: each stage's share of the wall time, and the overlap achieved.

Stages: install (``--install``: ``make``'s install recipe into a fresh virtual environment with cold
package caches, timed here, and then the quickstart runs in that environment as ``make quickstart``
runs it — a fresh process that compiles each module's bytecode on first import; or
``--install-seconds S`` measured elsewhere, the quickstart then running in this process with
``run_quickstart``), a fresh OUT and cache each time: the built-in generator, generation,
recognisability, the other graph tasks (cleaning, audit), the training runs and the report.
Each stage's time is the union of its intervals on the clock — tasks from their logs
(OUT/tasks/*.json), training runs from their records (finished at the record's write, lasting its
``wall_seconds``), the report measured here — so stages that run at the same time show as
overlap: **overlap = sum of the stages' times ÷ wall time** (1.0: one after the other, the gaps
left over as "other"; above 1: stages overlapped).

Usage: python bench/quickstart_stages.py [OUT] [--install | --install-seconds S]
       (OUT is deleted first; default /tmp/dermsynth-qs-bench)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from dermsynth.cli.quickstart import run_quickstart
from dermsynth.models.precision_rule import cpu_name
from dermsynth.progress import progress_bars

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"train-generator": "built-in generator", "generate": "generation", "recognisability": "recognisability",
         "clean": "cleaning", "audit": "leakage audit", "filter": "synthetic filter", "finetune": "fine-tuning"}


def timed_install(tmp: Path) -> tuple[float, Path]:
    """Seconds of ``make``'s install recipe into a fresh venv under ``tmp`` with cold package caches,
    and the venv."""
    venv = tmp / "venv"
    env = {**os.environ, "PIP_CACHE_DIR": f"{tmp}/pip-cache", "UV_CACHE_DIR": f"{tmp}/uv-cache"}
    t0 = time.perf_counter()
    subprocess.run(["make", "--no-print-directory", f"{venv}/.dermsynth-installed", f"VENV={venv}"], cwd=ROOT,
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, venv


def quickstart_in(venv: Path, out: Path) -> dict:
    """``dermsynth quickstart`` in ``venv``, in its own process, with the environment ``make quickstart``
    gives it (bytecode written on first import); its JSON summary."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run([str(venv / "bin" / "dermsynth"), "quickstart", "--out", str(out), "--json"], cwd=ROOT,
                          env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def union(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of intervals (seconds on the clock covered by at least one)."""
    total, end = 0.0, -float("inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def stage_intervals(out: Path, t0: float) -> dict[str, list[tuple[float, float]]]:
    """{stage: [(start, end), ...]} from the task logs and the run records written after ``t0``."""
    stages: dict[str, list[tuple[float, float]]] = {}
    for log in sorted((out / "tasks").glob("*.json")):
        info = json.loads(log.read_text())
        if info.get("start", 0) >= t0 - 1:
            stages.setdefault(NAMES.get(info["kind"], info["kind"]), []).append((info["start"], info["end"]))
    for rec in sorted((out / "runs").glob("*.json")):
        if rec.name.endswith(".failed.json"):
            continue
        end = rec.stat().st_mtime
        secs = json.loads(rec.read_text()).get("wall_seconds", 0.0)
        if end >= t0:
            stages.setdefault("training runs", []).append((end - secs, end))
    return stages


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="/tmp/dermsynth-qs-bench")
    ap.add_argument("--install", action="store_true", help="time make's install into a fresh venv first")
    ap.add_argument("--install-seconds", type=float, help="the install's seconds, measured elsewhere")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads); "
          f"Python {platform.python_version()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="dermsynth-install-") as tmp:
        if args.install:
            install, venv = timed_install(Path(tmp))
            t0 = time.time()
            res = quickstart_in(venv, out)
        else:
            install, t0 = args.install_seconds, time.time()
            with progress_bars(False):
                res = run_quickstart(out)
        t_report = time.time() - res["report_seconds"]
        wall_run = time.time() - t0
    found = stage_intervals(out, t0)
    stages = {k: union(v) for k, v in found.items()}
    stages["report"] = res["report_seconds"]
    spans = [iv for v in found.values() for iv in v] + [(t_report, t_report + res["report_seconds"])]
    if install is not None:
        stages = {"install": install, **stages}
    wall = wall_run + (install or 0.0)
    busy = union(spans) + (install or 0.0)
    stages["other (data, preflight, gaps)"] = max(0.0, wall - busy)
    print(f"quickstart: {wall:.0f} s ({wall / 60:.1f} min) wall for {res['runs']} runs"
          + (f" — install {install:.0f} s + run {wall_run:.0f} s" if install is not None else
             " — install not measured (--install, or --install-seconds S)"))
    for name, secs in stages.items():
        print(f"  {name:<30} {secs:7.1f} s  {100 * secs / wall:5.1f} %")
    named = sum(v for k, v in stages.items() if not k.startswith("other"))
    rec = out / "analysis" / "recognisability" / "recognisability.json"
    if rec.exists():  # what the speed must not cost: how recognisable the synthetic images are
        rows = [r for r in json.loads(rec.read_text())["rows"] if r.get("class", "all") == "all"]
        print("recognisability (real-only classifier, accuracy [95 % CI]): " + "; ".join(
            f"{r['group']} {100 * r['accuracy']:.1f} % [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}] "
            f"(n={r['n']})" for r in rows))
    trained = out / "generator" / "model" / "training.json"
    if trained.exists():
        info = json.loads(trained.read_text())
        print(f"generator: {info['steps']} steps in {info['seconds']:.0f} s, trained in "
              f"{info.get('precision', 'fp32')} ({info.get('precision_reason', 'before the choice existed')})")
    print(f"overlap: sum of the stages' times ÷ wall time = {named:.0f} s ÷ {wall:.0f} s = {named / wall:.2f} "
          f"(stages one after the other give ≤ 1.00; {wall - busy:.0f} s of the wall had no stage running)")


if __name__ == "__main__":
    main()
