"""The split a study runs on, for tools that analyse its data afterwards (``embed``, ``quality``).

Fig. 2 and the quality table must compare a store with the real images of the study's own
split — its stratification, cleaning (duplicate groups, excluded images), test and validation
sizes — not with a split rebuilt from command-line defaults.
"""

from __future__ import annotations

from pathlib import Path

from dermsynth import files
from dermsynth.data.splits import SplitSpec
from dermsynth.errors import ConfigError
from dermsynth.experiments.results import load_records
from dermsynth.train.spec import RunSpec


def _same(a: str | Path | None, b: str | Path | None) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def study_split_spec(results: str | Path, store: str | Path | None = None) -> SplitSpec | None:
    """The SplitSpec of the study in ``results`` (of its cells that use ``store``, when any do);
    None when the folder holds no study (no experiment.json and no run records)."""
    results = Path(results)
    marker = results / "experiment.json"
    if marker.exists():
        from dermsynth.experiments.runner import resolve_runs
        from dermsynth.experiments.spec import validate_experiment

        runs = resolve_runs(validate_experiment(files.read_json(marker)["spec"], str(marker)), results)
    else:
        runs = [RunSpec(**r["spec"]) for r in load_records(results)] if (results / "runs").is_dir() else []
    if not runs:
        return None
    mine = [r for r in runs if _same(r.synthetic_store, store)] or runs
    specs = sorted({r.split_spec() for r in mine}, key=str)
    if len(specs) > 1:
        raise ConfigError(f"the study in {results} uses {len(specs)} different splits; analyse one store of one "
                          "split (--store) or pass --out without --results and give the split options")
    return specs[0]
