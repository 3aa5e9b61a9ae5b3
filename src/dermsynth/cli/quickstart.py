"""``dermsynth quickstart``: a whole small study end to end, offline, on a CPU.

Builds the demo data, trains the built-in generator on the training pool, generates
synthetic images by two methods, runs a small Fig.-3-style grid, analyses it and writes
the HTML report. Every stage is cached, so a re-run reuses what is done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dermsynth.cli.common import JsonOpt, OldOutOpt, default_study, emit, handles_errors, renamed
from dermsynth.cli.track import TrackOpt, track_folder, tracking_note

if TYPE_CHECKING:
    from dermsynth.experiments.spec import ExperimentSpec

log = logging.getLogger(__name__)


def run_quickstart(out: str | Path = default_study("quickstart"), spec: ExperimentSpec | None = None,
                   workers: int | None = None, track: str | None = None) -> dict:
    """Run the quickstart study (or ``spec``) into ``out`` and write its report; returns the timings.
    ``track``: an MLflow URI to log the runs and the report to (or the spec's ``[tracking]``)."""
    import pandas as pd

    from dermsynth.analysis.report import build_report
    from dermsynth.analysis.summary import headline_answer
    from dermsynth.experiments.presets import preset_path
    from dermsynth.experiments.runner import run_experiment
    from dermsynth.experiments.spec import load_experiment

    out = Path(out)
    spec = spec or load_experiment(preset_path("quickstart"))
    spec = spec.model_copy(update={"base": {**spec.base, "cache_dir": str(out / "cache")}})
    t0 = time.perf_counter()
    log.info("dermsynth quickstart — %s → %s", spec.description or spec.name, out)
    res = run_experiment(spec, out, workers=workers)
    t1 = time.perf_counter()
    report = build_report(out)
    t2 = time.perf_counter()
    tracking = track_folder(out, track, spec.tracking)
    comparisons, results = out / "comparisons.csv", out / "results.csv"
    answer = None
    if comparisons.exists():
        comps = pd.read_csv(comparisons)
        n_real = pd.read_csv(results)["n_real"].unique() if results.exists() else []
        if "n_real" not in comps and len(n_real) == 1:  # one n_real: not a column, but the sentence names it
            comps["n_real"] = int(n_real[0])
        answer = headline_answer(comps)
    return {**asdict(res), "report": str(report.resolve()), "experiment_seconds": t1 - t0,
            "report_seconds": t2 - t1, "tracking": tracking, "answer": answer}


@handles_errors
def quickstart(study: Path | None = typer.Option(None, "--study", metavar="DIR", help="Where the study and its "
                                                 "report go (default runs/quickstart, where `dermsynth experiment "
                                                 "status quickstart` looks)."),
               workers: int | None = typer.Option(None, help="Parallel training runs."),
               config: Path | None = typer.Option(None, help="Another experiment config to run the same way "
                                                  "(its study goes to runs/NAME)."),
               track: str | None = TrackOpt, out: Path | None = OldOutOpt, as_json: bool = JsonOpt):
    """A whole small study on the demo data, offline, on a CPU, ending with a report (STUDY/report.html)."""
    from dermsynth.experiments.spec import load_experiment

    folder = renamed(study, out, "--out", "--study") or default_study(config or "quickstart")
    res = run_quickstart(folder, load_experiment(config) if config else None, workers, track=track)
    emit(res, as_json, f"{res['runs']} runs ({res['ran']} this time, {res['failed']} failed) in "
                       f"{res['experiment_seconds']:.0f} s; report: {res['report']}" + tracking_note(res["tracking"])
                       + (f"\n{res['answer']}" if res["answer"] else ""))
