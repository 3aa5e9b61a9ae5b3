"""Train one real-only cell of a study with many seeds: the runs the A/A check needs.

The extra seeds go to ``OUT/calibration/runs/``, apart from ``OUT/runs/``, so the study's own
cells (and its report) keep exactly the seeds the config asks for; seeds the study already ran
are read from ``OUT/runs`` instead of being trained again (same spec, same run id).
"""

from __future__ import annotations

import json
from pathlib import Path

from dermsynth.errors import ConfigError, RunsFailedError
from dermsynth.experiments.executors import run_cells
from dermsynth.experiments.runner import pin_runs, resolve_runs
from dermsynth.experiments.spec import ExperimentSpec
from dermsynth.train.spec import RunSpec


def calibration_dir(out: str | Path) -> Path:
    return Path(out) / "calibration" / "runs"


def _matches(run: RunSpec, where: dict[str, str]) -> bool:
    return all(str(getattr(run, field)).lower() == str(value).lower() for field, value in where.items())


def parse_where(items: list[str] | None) -> dict[str, str]:
    """``["n_real=16", "transforms=false"]`` → a dict; fields must be RunSpec fields."""
    out = {}
    for item in items or []:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise ConfigError(f"--where {item!r}: write FIELD=VALUE, e.g. --where n_real=16")
        if field not in RunSpec.model_fields:
            raise ConfigError(f"--where {item!r}: {field!r} is not a run field; e.g. n_real, transforms, backbone")
        out[field] = value
    return out


def calibration_cell(spec: ExperimentSpec, out: str | Path, where: dict[str, str]) -> RunSpec:
    """The real-only cell to calibrate on: the one ``where`` names, else the one with the most real
    images per class (where seeds differ most once accuracy leaves chance), first of the others."""
    base = [r for r in resolve_runs(spec, Path(out)) if r.synthetic_per_real == 0 and r.repeat_real == 1]
    chosen = [r for r in base if _matches(r, where)]
    if not chosen:
        seen = sorted({json.dumps({k: getattr(r, k) for k in where}) for r in base}) if where else []
        raise ConfigError(f"no real-only cell of {spec.name} matches --where {where}"
                          + (f"; its real-only cells have {', '.join(seen[:8])}" if seen else ""))
    top = max(r.n_real for r in chosen)
    return next(r for r in chosen if r.n_real == top)


def calibration_runs(spec: ExperimentSpec, out: str | Path, seeds: int = 10, where: dict[str, str] | None = None,
                     workers: int = 1) -> tuple[RunSpec, list[dict]]:
    """Train (or reuse) ``seeds`` seeds of the calibration cell; returns the cell and the records."""
    if seeds < 4:
        raise ConfigError(f"--seeds {seeds}: an A/A check needs at least 4 seeds (two arms of 2)")
    out = Path(out)
    cell = calibration_cell(spec, out, where or {})
    runs = pin_runs([cell.model_copy(update={"seed": s}) for s in range(seeds)])
    study, cal = out / "runs", calibration_dir(out)
    cal.mkdir(parents=True, exist_ok=True)
    pending = [r for r in runs if not (study / f"{r.run_id()}.json").exists()
               and not (cal / f"{r.run_id()}.json").exists()]
    failures = run_cells(pending, cal, "local", workers, None)
    if failures:
        rid, err = next(iter(failures.items()))
        raise RunsFailedError(f"{len(failures)} calibration run(s) failed (e.g. {rid}: {err}); see {cal}")
    records = []
    for r in runs:
        path = study / f"{r.run_id()}.json"
        path = path if path.exists() else cal / f"{r.run_id()}.json"
        records.append(json.loads(path.read_text()))
    return cell, records
