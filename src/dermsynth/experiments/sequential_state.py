"""A sequential study's record (``OUT/sequential.json``): its design, every look taken, and the
seeds each cell has been given beyond the config's.

Why a file of its own, beside the config: the seeds a cell gets depend on what earlier looks
decided, so they cannot be written in the config; and a study killed between looks must resume
at the same look with the same design. The record is written atomically once per look, after
that look's decisions and together with the seeds they add, so a kill at any moment leaves
either the old look or the new one (the runs themselves are skipped once their records exist).

Added seeds continue the config's: planned seeds [0 … 4] grow to [0 … 7], and a cell with
n seeds per arm always uses the first n of that sequence, so two arms with n seeds are paired.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dermsynth import files
from dermsynth.errors import ConfigError
from dermsynth.field_roles import SETTING, fields_with
from dermsynth.train.spec import RunSpec

STATE_FILE = "sequential.json"
_SETTINGS = frozenset(fields_with(RunSpec, SETTING))


def state_path(out: str | Path) -> Path:
    return Path(out) / STATE_FILE


def load_state(out: str | Path) -> dict | None:
    path = state_path(out)
    return files.read_json(path) if path.exists() else None


def save_state(out: str | Path, state: dict) -> None:
    files.write_json(state_path(out), state)


DESIGN_KEYS = ("looks", "alpha", "spending")
# What the looks decide: every comparison of the report's main family (with vs without synthetic
# data, on accuracy), or the one comparison a config's [main_comparison] names.
LOOKS_AT_FAMILY = "with vs without synthetic data"
LOOKS_AT_MAIN = "main comparison"


def looks_at(state: dict) -> str:
    return state.get("looks_at", LOOKS_AT_FAMILY)  # records from before the field: the family


def _decides(state: dict, default: str | None) -> str | None:
    """The main comparison a record's looks decide (records from before the key: the one their
    looks named; before any look, ``default``)."""
    if "decides" in state:
        return state["decides"]
    named = {k for entry in state.get("looks", []) for k in entry["decisions"]}
    return next(iter(named)) if looks_at(state) == LOOKS_AT_MAIN and len(named) == 1 else default


def start_or_resume(out: str | Path, design: dict, target_effect: float | None,
                    looks_at_: str = LOOKS_AT_FAMILY, grows: list[str] | None = None,
                    decides: str | None = None) -> dict:
    """The study's record: a new one, or the one on disk when its design is this one (a
    different design on a folder that has looked already would spend α twice: refused).
    ``grows``: the only cells a look may give seeds to (None: any), what the stages prepare for;
    ``decides``: the main comparison the looks decide (changing it between looks would be
    switching outcomes after seeing data: refused)."""
    old = load_state(out)
    if old is None:
        state = {"design": design, "target_effect": target_effect, "looks_at": looks_at_, "decides": decides,
                 "grows": grows, "looks": [], "extend": {}}
        save_state(out, state)
        return state
    if looks_at(old) != looks_at_ or _decides(old, decides) != decides:
        raise ConfigError(f"{state_path(out)} records looks that decide "
                          f"{_decides(old, None) or 'the ' + looks_at(old)}; this config's looks would decide "
                          f"{decides or 'the ' + looks_at_}. The comparison a sequential study decides is fixed when "
                          "it starts: restore the config's [main_comparison], or use another --study")
    if any(old["design"][k] != design[k] for k in DESIGN_KEYS):
        raise ConfigError(f"{state_path(out)} records a sequential design with looks {old['design']['looks']} "
                          f"({old['design']['spending']}, α {old['design']['alpha']}); this run asks for "
                          f"{design['looks']} ({design['spending']}, α {design['alpha']}). Resume with the same "
                          "--max-seeds and --looks, or use another --study")
    return old


def seed_sequence(planned: list[int], n: int) -> list[int]:
    """The first ``n`` seeds of the config's planned seeds continued past their largest: a cell
    with n seeds per arm always has these, so two arms with n seeds are paired."""
    extra = [max(planned) + 1 + i for i in range(max(0, n - len(planned)))]
    return (list(planned) + extra)[:n]


def cell_key(run: RunSpec) -> str:
    """A cell's identity: its settings, without the seed or anything pinned per seed (its split)."""
    settings = {k: v for k, v in run.model_dump().items() if k in _SETTINGS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def with_added_seeds(runs: list[RunSpec], planned_seeds: list[int], out: str | Path,
                     last_look: bool = False) -> list[RunSpec]:
    """The config's runs, plus the seeds that earlier looks of a sequential study added to cells.

    ``last_look``: every cell a look may grow (the record's ``grows``: all, or a main comparison's
    cells) with the seeds of the design's last look instead — what the stages before the cells
    prepare for (a synthetic store made for every seed a look may add keeps its digest, and so
    every finished run its id, from look to look)."""
    state = load_state(out)
    if not state or not (state.get("extend") or last_look):
        return runs
    by_cell: dict[str, list[RunSpec]] = {}
    for r in runs:
        by_cell.setdefault(cell_key(r), []).append(r)
    grows = state.get("grows") or by_cell
    extend = ({key: state["design"]["looks"][-1] for key in by_cell if key in grows} if last_look
              else state["extend"])
    added = []
    for key, n in extend.items():
        cell = by_cell.get(key)
        if not cell:
            continue  # a cell the config no longer has
        have = {r.seed for r in cell}
        added += [cell[0].model_copy(update={"seed": s}) for s in seed_sequence(planned_seeds, int(n))
                  if s not in have]
    return runs + added

