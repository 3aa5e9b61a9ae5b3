"""Which finished runs belong to a study as it is now, and why the others do not.

A results folder can hold records that no longer answer the study's question: runs of an
earlier config written beside the new ones with ``--force``, runs made on an earlier version
of the data set (another split digest) or from a regenerated store, and runs trained on
images that were edited in place since (same ids, other bytes). Averaging them into a cell
mixes two experiments; pairing their predictions compares different test sets. Reports use
:func:`current_records` — exactly the runs the experiment plans now, on the data as it is
now — and count what they leave out, with the reason; ``experiment run`` re-runs a planned
run whose record was made from other image bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dermsynth import files as dio
from dermsynth.errors import DermsynthError
from dermsynth.experiments.runner import planned_runs
from dermsynth.experiments.spec import validate_experiment
from dermsynth.field_roles import REPLICATE, SETTING, fields_with
from dermsynth.train.spec import RunSpec

# a run's cell: its settings and seed, not its pinned inputs or how it executed (declared roles)
CELL_FIELDS = frozenset(fields_with(RunSpec, SETTING, REPLICATE))


@dataclass
class Currency:
    """The records that belong to the study now, and (run id, reason) for each that does not."""

    kept: list[dict]
    left_out: list[tuple[str, str]] = field(default_factory=list)
    checked: bool = True  # False when the folder has no experiment.json to check against
    unchecked_reason: str = ""  # why the runs could not be checked (e.g. the data is not on this machine)

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, why in self.left_out:
            out[why] = out.get(why, 0) + 1
        return out


def _cell_key(spec: dict) -> str:
    """A run's settings without its pinned inputs: equal keys mean 'the same cell, other data'."""
    full = {**RunSpec().model_dump(), **spec}  # a record from before a field existed has its default
    return json.dumps({k: v for k, v in full.items() if k in CELL_FIELDS}, sort_keys=True, default=str)


def stale_reason(record_spec: dict, planned: RunSpec | None, same_cell: RunSpec | None) -> str | None:
    """Why a record is not a result of the study as it is now (None: it is)."""
    if planned is not None:
        old = record_spec.get("content_digest")
        if old is not None and planned.content_digest is not None and old != planned.content_digest:
            return "images edited since it ran (content digest differs)"
        return None
    if same_cell is not None:
        if record_spec.get("data_digest") != same_cell.data_digest:
            return "made on another version of the data set or split (data digest differs)"
        if record_spec.get("synthetic_fingerprint") != same_cell.synthetic_fingerprint:
            return "made from another synthetic store (store regenerated)"
        return "made with other pinned inputs (synthetic filter view)"
    return "not a run of the current config (another config's run, e.g. written with --force)"


def current_records(out: str | Path, records: list[dict]) -> Currency:
    """Split ``records`` into the study's current runs and the rest (with reasons)."""
    out = Path(out)
    marker = out / "experiment.json"
    claim = dio.read_json(marker) if marker.exists() else {}
    if "spec" not in claim or claim.get("triage"):
        return Currency(records, checked=False)
    try:
        spec = validate_experiment(claim["spec"], str(marker))
        planned = {r.run_id(): r for r in planned_runs(spec, out)}
    except DermsynthError as exc:  # e.g. a results folder copied to a machine without the data
        return Currency(records, checked=False, unchecked_reason=str(exc))
    by_cell = {_cell_key(r.model_dump()): r for r in planned.values()}
    kept, left = [], []
    for rec in records:
        why = stale_reason(rec["spec"], planned.get(rec["run_id"]), by_cell.get(_cell_key(rec["spec"])))
        if why is None:
            kept.append(rec)
        else:
            left.append((rec["run_id"], why))
    return Currency(kept, left)
