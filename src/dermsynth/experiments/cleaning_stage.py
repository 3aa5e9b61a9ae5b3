"""The cleaning stage: duplicate clusters of each split a study uses, found before anything
else runs (every later stage and cell splits by them), cached and resumable.

A split with a ``cleaning`` setting (data/cleaning.py) finds its clusters whenever it is loaded;
this stage does it first, once per distinct split, as a task of the study's graph (logged in
OUT/tasks like the others), and writes what it found to OUT/cleaning/ for the report. A re-run
reads the cached clusters while the images and settings are unchanged.
"""

from __future__ import annotations

from pathlib import Path

from dermsynth import files
from dermsynth.data.splits import load_split
from dermsynth.experiments.graph import Task
from dermsynth.experiments.task_payloads import CleanPayload
from dermsynth.train.spec import RunSpec


def cleaning_tasks(runs: list[RunSpec], out: Path) -> list[Task]:
    """One ``clean`` task per distinct split that asks for cleaning (none without it)."""
    specs = sorted({r.split_spec() for r in runs if r.cleaning is not None}, key=str)
    return [Task(f"clean/{i}", "clean", task_clean,
                 CleanPayload(split=s, record=str(Path(out) / "cleaning" / f"split-{i}.json")))
            for i, s in enumerate(specs)]


def task_clean(payload: CleanPayload) -> dict:
    """Load the split (finding or reading its duplicate clusters) and record what cleaning found."""
    spec = payload.split
    split = load_split(spec)
    table = split.table
    in_groups = table[table["group"].duplicated(keep=False)]
    summary = {**split.cleaning, "dataset": spec.dataset, "classes": spec.classes,
               "images_in_shared_groups": int(len(in_groups)), "groups": int(table["group"].nunique())}
    files.write_json(payload.record, summary)
    return summary


def cleaning_records(out: str | Path) -> list[dict]:
    """What the cleaning stage of the study in ``out`` found, one dict per split."""
    return [files.read_json(p) for p in sorted((Path(out) / "cleaning").glob("split-*.json"))]
