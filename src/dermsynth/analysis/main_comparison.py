"""The study's main comparison (``[main_comparison]``): the one comparison it is designed and
powered to decide, named before it runs.

Why a module of its own: the report tests it alone, in a family of its own (among the 56
exploratory gap rows of a remedy study it would need p < α / 56 at BH's worst), and a sequential
study (``experiment run --until-decided``) decides it look by look and gives seeds to its two
cells only. Both read it here, from the same runs with the same test, so the comparison the looks
stopped is the comparison the report states.

The arm is the cells whose runs have every field the config names; the reference is the real-only
cell without a remedy that matches it in every other field (analysis/gap_pairs.py). At a look,
both are taken on exactly that look's seeds. A stopped comparison's interval is the repeated
confidence interval of its look (level 1 − that look's nominal α, Jennison & Turnbull, ch. 9),
which excludes zero exactly when the look crossed its boundary; its p is the stage-wise one
(analysis/sequential.py).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from dermsynth.analysis.gap_outcomes import GapTest, gap_test
from dermsynth.analysis.gap_pairs import NO_REMEDY, REMEDY_DEFAULTS, gap_pairs, gap_row, run_arrays
from dermsynth.analysis.sequential import LookView
from dermsynth.analysis.summary import canonical
from dermsynth.analysis.verdicts import equivalence_p
from dermsynth.errors import ConfigError
from dermsynth.experiments.sequential_state import cell_key
from dermsynth.train.spec import RunSpec, real_only_fields

MAIN_FAMILY = "the main comparison, named before running (tested alone)"
log = logging.getLogger(__name__)


def main_key(main: dict) -> str:
    """The main comparison's identity in a sequential study's record and its report."""
    arm = {k: canonical(v) for k, v in main["arm"].items()}
    return "main comparison " + json.dumps({"arm": arm, "outcome": main["outcome"]}, sort_keys=True)


def is_main(main: dict | None, what: str, arm: pd.DataFrame, outcome: str) -> bool:
    """Whether a comparison is the study's main one: its arm's runs have every field ``main``
    names, its reference is real only without a remedy, and the outcome is ``main``'s."""
    if not main or outcome != main["outcome"] or not what.endswith(f"vs real only ({NO_REMEDY})"):
        return False
    return all(k in arm and all(canonical(x) == canonical(v) for x in arm[k]) for k, v in main["arm"].items())


def main_runs(table: pd.DataFrame, main: dict) -> tuple[str, pd.DataFrame, pd.DataFrame] | None:
    """(what, arm runs, reference runs) of the main comparison; None while either has no run."""
    for what, arm, ref in gap_pairs(table):
        if is_main(main, what, arm, main["outcome"]):
            return what, arm, ref
    return None


def test_on_seeds(arm: pd.DataFrame, ref: pd.DataFrame, records: list[dict], outcome: str,
                  level: float = 0.95) -> GapTest:
    """The gap test of ``arm`` against ``ref`` on ``outcome`` (every run of both as given)."""
    by_run = {r["run_id"]: r for r in records}
    _, label, group = run_arrays(by_run[arm["run_id"].iloc[0]])
    n_classes = len(by_run[arm["run_id"].iloc[0]]["classes"])
    a = [run_arrays(by_run[r])[0] for r in arm["run_id"]]
    b = [run_arrays(by_run[r])[0] for r in ref["run_id"]]
    return gap_test(outcome, a, b, label, group, n_classes, arm["seed"].tolist(), ref["seed"].tolist(), level=level)


def on_seeds(arm: pd.DataFrame, ref: pd.DataFrame, seeds: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return arm[arm["seed"].isin(seeds)], ref[ref["seed"].isin(seeds)]


def main_row(table: pd.DataFrame, records: list[dict], main: dict, view: LookView | None = None) -> dict | None:
    """The report's row for the main comparison: on every seed both arms have, or — in a study
    whose looks decide it — on the seeds of the look it stopped at, with that look's repeated
    interval, its stage-wise p and the look's columns."""
    found = main_runs(table, main)
    if found is None:
        return None
    what, arm, ref = found
    key, level, look = main_key(main), 0.95, None
    if view is not None and key in view.recorded:
        look = view.at(key)
        arm, ref = on_seeds(arm, ref, view.seeds_for(key))
        level = (1 - 2 * view.design.nominal(1)[look] if view.final[key][1] == "equivalence"  # the TOST interval
                 else 1 - view.design.nominal()[look])
    if arm.empty or ref.empty:
        return None
    res = test_on_seeds(arm, ref, records, main["outcome"], level)
    row = gap_row(what, res, int(arm["n_test"].iloc[0]), arm, ref, MAIN_FAMILY)
    if look is not None:
        recorded = view.recorded[key]  # the p-values the look decided on, not a recomputation
        changed = not np.isclose(recorded["p_fixed"], res.p_value, equal_nan=True)
        if changed:
            log.warning("the main comparison's p at look %d is %.4g now, %.4g when the look decided it (runs changed "
                        "since); the report states the look's", look + 1, res.p_value, recorded["p_fixed"])
        row.update({"comparison_key": key, "ci_level": level, "p_now": res.p_value if changed else np.nan,
                    **view.columns(key, recorded["p_fixed"], recorded["p_equiv_fixed"])})
    return row


def look_decision_inputs(table: pd.DataFrame, records: list[dict], main: dict,
                         seeds: list[int]) -> tuple[GapTest, float, pd.DataFrame, pd.DataFrame] | None:
    """At a look: the main comparison's gap test on exactly ``seeds``, its equivalence p (TOST
    within the report's effect of interest) and its two arms' runs; None while either arm lacks
    one of those seeds."""
    found = main_runs(table, main)
    if found is None:
        return None
    arm, ref = on_seeds(found[1], found[2], seeds)
    if set(arm["seed"]) != set(seeds) or set(ref["seed"]) != set(seeds):
        return None
    res = test_on_seeds(arm, ref, records, main["outcome"])
    return res, equivalence_p(res.difference, res.se, res.df), arm, ref


def main_cells(runs: list[RunSpec], main: dict) -> list[str]:
    """The main comparison's two cells, which a sequential study's looks give seeds to: its arm
    (the one synthetic cell without a remedy whose runs have every field ``main`` names) and its
    reference (that cell with every synthetic-arm field at its default: real only, no remedy)."""
    def no_remedy(d: dict) -> bool:
        return all(d[k] == v for k, v in REMEDY_DEFAULTS.items())

    def in_arm(d: dict) -> bool:
        return d["synthetic_per_real"] > 0 and no_remedy(d) and all(canonical(d.get(k)) == canonical(v)
                                                                     for k, v in main["arm"].items())

    arm = {cell_key(r): r for r in runs if in_arm(r.model_dump())}
    if len(arm) != 1:
        raise ConfigError(f"[main_comparison] arm {main['arm']} matches {len(arm)} cells of the grid without a remedy; "
                          "it must name one (add the fields that tell them apart, e.g. n_real)")
    reference = RunSpec(**{**next(iter(arm.values())).model_dump(), **real_only_fields()})
    if cell_key(reference) not in {cell_key(r) for r in runs}:
        raise ConfigError(f"[main_comparison] arm {main['arm']} has no real-only cell without a remedy to be "
                          "compared with: add synthetic_per_real = 0 to the grid")
    return sorted({*arm, cell_key(reference)})
