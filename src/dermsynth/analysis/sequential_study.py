"""``experiment run --until-decided``: run the planned seeds, look, and add seeds in rounds only
to the cells whose comparisons are still undecided, under a group-sequential design.

Each look takes every comparison of the main family (with vs without synthetic data) that is
still running, on exactly the seeds of that look (the first n of the seed sequence, whatever
else has run since), and stops it when its seed-aware test crosses the design's difference
boundary or its equivalence test the equivalence boundary (analysis/sequential.py). The
comparisons left get the next look's seeds, in both arms: their synthetic cell and its
real-only reference. The look's decisions and the seeds they add are written to
``OUT/sequential.json`` in one atomic step (experiments/sequential_state.py); every run is a
normal cell run, skipped once its record exists. So a kill at any moment resumes at the same
look and runs nothing twice, and the report reads each comparison at the look it stopped.

It lives in the analysis layer, above the runner it drives, because each look decides from the
report's own comparison table (analysis/summary.py).

The other families of the report (the steps-matched control, skin-type groups) are not looked
at: they are tested, fixed-design, on whatever seeds both of their arms have.

A config with a ``[main_comparison]`` names the one comparison it is powered for; then the looks
decide that comparison alone (its gap test on the look's seeds, analysis/main_comparison.py) and
only its two cells get more seeds; every other table of the report reads the planned seeds.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from dermsynth.analysis.main_comparison import look_decision_inputs, main_cells, main_key
from dermsynth.analysis.sequential import LookView, SequentialDesign, decide, design_from
from dermsynth.analysis.summary import comparison_key, matched_cells, synthetic_comparisons
from dermsynth.errors import ConfigError
from dermsynth.experiments.current_runs import current_records
from dermsynth.experiments.results import load_records, results_table
from dermsynth.experiments.runner import run_experiment
from dermsynth.experiments.sequential_state import (
    LOOKS_AT_FAMILY,
    LOOKS_AT_MAIN,
    cell_key,
    save_state,
    seed_sequence,
    start_or_resume,
)
from dermsynth.experiments.spec import ExperimentSpec, SequentialSpec, cells
from dermsynth.train.spec import RunSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequentialOutcome:
    """What a sequential study has done: its looks, its decisions and the runs it used."""

    looks: list[int]  # seeds per arm at every look of the design
    looks_taken: int
    decisions: dict[str, int]  # how many comparisons stopped for each reason (or are still running)
    runs: int  # runs the study has now
    runs_at_last_look: int  # runs the design's last look would have, every comparison running to it
    ran: int  # runs made by this call
    failed: int
    complete: bool


def default_max_seeds(spec: ExperimentSpec, out: Path, target_effect: float | None) -> int:
    """``--max-seeds`` when not given: the fixed design's seeds for ``target_effect`` (80 %
    power, from the plan's seed sd), 5 % more for the sequential design's looks; else twice the
    config's seeds."""
    planned = len(spec.seed_list())
    if target_effect:
        from dermsynth.analysis.aa_check import planned_power

        power = planned_power(spec, out, target_effect)
        if power is None:
            raise ConfigError("--target-effect needs to know how much seeds vary: run `dermsynth experiment "
                              "calibrate CONFIG`, set seed_sd in the config, or give --max-seeds")
        if power["seeds_for_target"] is None:
            raise ConfigError(f"{100 * target_effect:.0f} points would need more than 200 seeds per arm "
                              f"(seed sd {100 * power['seed_sd']:.1f} points): give --max-seeds")
        return max(planned + 1, math.ceil(1.05 * power["seeds_for_target"]))
    return 2 * planned


def sequential_design(spec: ExperimentSpec, until_decided: bool, rehearse: bool, max_seeds: int | None,
                      looks: int | None, spending: str | None,
                      target_effect: float | None = None) -> tuple[int | None, int, str] | None:
    """(max seeds, looks, spending) when ``experiment run`` runs until decided — asked on the
    command line, or by the config's [sequential] (not in a rehearsal, which runs its stand-ins
    once) — each value from the command line, else the config, else the defaults; None otherwise."""
    design = spec.sequential if not rehearse else None
    if not until_decided and design is None:
        return None
    design = design or SequentialSpec()
    return (max_seeds or (None if target_effect else design.max_seeds),  # --target-effect sizes it instead
            looks or design.looks, spending or design.spending)


def run_until_decided(spec: ExperimentSpec, out: str | Path, max_seeds: int | None = None, looks: int = 3,
                      target_effect: float | None = None, spending: str = "obrien-fleming",
                      executor: str = "local", workers: int | None = None, address: str | None = None,
                      force: bool = False) -> SequentialOutcome:
    """Run the study look by look until every comparison of its main family is decided or has
    reached ``max_seeds`` seeds per arm."""
    out = Path(out)
    if target_effect and spec.main_comparison is not None:
        raise ConfigError("--target-effect sizes a design from the seed sd of accuracy, not of the main comparison's "
                          f"{spec.main_comparison.outcome}: give --max-seeds (or [sequential] max_seeds), e.g. from "
                          "bench/gap_test_validity.py's power for that outcome")
    planned = len(spec.seed_list())
    most = max_seeds or default_max_seeds(spec, out, target_effect)
    design = SequentialDesign.spaced(planned, most, looks, spending=spending)
    main = spec.main_comparison.model_dump() if spec.main_comparison else None
    state = start_or_resume(out, design.as_dict(), target_effect, LOOKS_AT_MAIN if main else LOOKS_AT_FAMILY,
                            main_cells(cells(spec), main) if main else None, main_key(main) if main else None)
    ran = failed = 0
    while True:
        res = run_experiment(spec, out, executor, workers, address, force)
        ran, failed = ran + res.ran, failed + res.failed
        look = len(state["looks"])
        if failed or look >= len(design.looks) or _finished(state):
            break  # a failed run leaves its look to the next call (after the failure is fixed)
        decisions = take_look(spec, out, state, look)
        state = _record(state, design, look, decisions)
        save_state(out, state)
        log.info("look %d of %d (%d seeds per arm): %s", look + 1, len(design.looks), design.looks[look],
                 ", ".join(f"{k} {v}" for k, v in _counts(decisions).items()))
        if _finished(state):
            break
    return _outcome(spec, out, state, design, ran, failed)


def take_look(spec: ExperimentSpec, out: Path, state: dict, look: int) -> dict[str, dict]:
    """Every comparison still running at ``look``, tested on that look's seeds: its decision, its
    fixed-design p-values and the cells of its two arms."""
    records = current_records(out, load_records(out)).kept
    table = results_table(out, records)
    if spec.main_comparison is not None:
        return _main_look(spec, table, records, state, look)
    running = _running(state)
    comps = synthetic_comparisons(table, records, sequential=LookView(state, spec.seed_list(), look))
    cells_of = {rec["run_id"]: cell_key(RunSpec.model_validate(rec["spec"])) for rec in records}
    arms = {comparison_key(cell): (cells_of[arm["run_id"].iloc[0]], cells_of[ref["run_id"].iloc[0]])
            for cell, arm, ref in matched_cells(table)}
    design = design_from(state)
    out_decisions: dict[str, dict] = {}
    for _, row in comps.iterrows():
        key = row["comparison_key"]
        if running is not None and key not in running:
            continue  # stopped at an earlier look
        if row["degenerate"]:
            decision = {"decision": "not comparable", "p_fixed": float("nan"), "p_equiv_fixed": float("nan")}
        else:
            d = decide(design, look, float(row["p_seed"]), float(row["p_equiv"]))
            decision = {"decision": d.decision, "p_fixed": d.p_fixed, "p_equiv_fixed": d.p_equiv_fixed}
        arm, reference = arms[key]
        out_decisions[key] = {**decision, "arm": arm, "reference": reference, "seeds": int(row["seeds"])}
    return out_decisions


def _main_look(spec: ExperimentSpec, table, records: list[dict], state: dict, look: int) -> dict[str, dict]:
    """The main comparison at ``look``: its gap test on exactly that look's seeds, decided by the
    design's boundaries (a look whose seeds have not all run yet: an error, never a silent skip)."""
    main = spec.main_comparison.model_dump()
    design = design_from(state)
    seeds = seed_sequence(spec.seed_list(), design.looks[look])
    found = look_decision_inputs(table, records, main, seeds)
    if found is None:
        raise ConfigError(f"look {look + 1}: the main comparison ({main['outcome']}, arm {main['arm']}) does not "
                          f"have runs of seeds {seeds} in both its arm and its real-only reference without a "
                          "remedy; check that [main_comparison] names an arm of the grid")
    res, p_equiv, arm, ref = found
    d = decide(design, look, res.p_value, p_equiv)
    cells_of = {rec["run_id"]: cell_key(RunSpec.model_validate(rec["spec"])) for rec in records}
    return {main_key(main): {"decision": d.decision, "p_fixed": d.p_fixed, "p_equiv_fixed": d.p_equiv_fixed,
                             "arm": cells_of[arm["run_id"].iloc[0]], "reference": cells_of[ref["run_id"].iloc[0]],
                             "seeds": len(seeds)}}


def _running(state: dict) -> set[str] | None:
    """Keys still running after the last look (None before the first: every comparison)."""
    if not state["looks"]:
        return None
    return {k for k, d in state["looks"][-1]["decisions"].items() if d["decision"] == "continue"}


def _finished(state: dict) -> bool:
    return bool(state["looks"]) and not _running(state)


def _record(state: dict, design: SequentialDesign, look: int, decisions: dict[str, dict]) -> dict:
    """The state with this look's decisions and the next look's seeds for what goes on (only
    cells the record lets grow: the stages prepared no others for more seeds)."""
    extend = dict(state["extend"])
    grows = state.get("grows")
    outside = {c for d in decisions.values() for c in (d["arm"], d["reference"])} - set(grows or ())
    if grows is not None and outside:
        raise ConfigError(f"look {look + 1} would give seeds to cells {sorted(outside)} outside the ones this study "
                          f"prepared ({grows}); rerun with the config it started with")
    if look + 1 < len(design.looks):
        nxt = design.looks[look + 1]
        for d in decisions.values():
            if d["decision"] == "continue":
                for cell in (d["arm"], d["reference"]):
                    extend[cell] = max(int(extend.get(cell, 0)), nxt)
    entry = {"look": look, "seeds": design.looks[look], "decisions": decisions}
    return {**state, "looks": [*state["looks"], entry], "extend": extend}


def _counts(decisions: dict[str, dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in decisions.values():
        out[d["decision"]] = out.get(d["decision"], 0) + 1
    return out


def _outcome(spec: ExperimentSpec, out: Path, state: dict, design: SequentialDesign, ran: int,
             failed: int) -> SequentialOutcome:
    from dermsynth.experiments.runner import resolve_runs

    final: dict[str, str] = {}
    for entry in state["looks"]:
        final.update({k: d["decision"] for k, d in entry["decisions"].items()})
    counts: dict[str, int] = {}
    for v in final.values():
        counts[v] = counts.get(v, 0) + 1
    n_cells = len({cell_key(r) for r in cells(spec)})
    at_last = (n_cells * design.looks[-1] if spec.main_comparison is None  # else only its 2 cells grow
               else n_cells * design.looks[0] + 2 * (design.looks[-1] - design.looks[0]))
    return SequentialOutcome(looks=list(design.looks), looks_taken=len(state["looks"]), decisions=counts,
                             runs=len(resolve_runs(spec, out)), runs_at_last_look=at_last,
                             ran=ran, failed=failed, complete=_finished(state))


def outcome_line(o: SequentialOutcome) -> str:
    """One line: the looks taken, what they decided, and the runs used against the last look's."""
    state = "complete" if o.complete else ("stopped by failed runs" if o.failed else "in progress")
    return (f"sequential study {state}: {o.looks_taken} of {len(o.looks)} looks (seeds per arm "
            f"{', '.join(map(str, o.looks))}); " + ", ".join(f"{n} {k}" for k, n in sorted(o.decisions.items()))
            + f"; {o.runs} runs used, {o.runs_at_last_look} if every cell had run to the last look; "
            f"{o.ran} ran now, {o.failed} failed")
