"""``dermsynth quickstart``: a whole small study end to end, offline, on a CPU.

Builds the demo data, trains the built-in generator on the training pool, generates
synthetic images by two methods, runs a small Fig.-3-style grid, analyses it and writes
the HTML report. Every stage is cached, so a re-run reuses what is done.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from rich.console import Console

from dermsynth.analysis.report import build_report
from dermsynth.experiments.runner import run_experiment
from dermsynth.experiments.spec import ExperimentSpec, load_experiment

console = Console(stderr=True)


def preset_path(name: str) -> Path:
    return Path(str(resources.files("dermsynth") / "presets" / f"{name}.toml"))


def quickstart(out: str | Path = "quickstart-out", spec: ExperimentSpec | None = None, workers: int | None = None,
               progress: bool = True) -> Path:
    out = Path(out)
    spec = spec or load_experiment(preset_path("quickstart"))
    spec = spec.model_copy(update={"base": {**spec.base, "cache_dir": str(out / "cache")}})
    timings = {}
    t0 = time.perf_counter()
    console.rule("[bold]dermsynth quickstart")
    console.print(f"study: {spec.description or spec.name} → {out}")
    res = run_experiment(spec, out, workers=workers, progress=progress)
    timings["experiment"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    report = build_report(out)
    timings["report"] = time.perf_counter() - t1
    console.print(f"{res['runs']} runs ({res['ran']} this time, {res['failed']} failed) in "
                  f"{timings['experiment']:.0f} s; report in {timings['report']:.0f} s")
    console.print(f"[bold green]report:[/] {report.resolve()}")
    return report
