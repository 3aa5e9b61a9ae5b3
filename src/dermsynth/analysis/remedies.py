"""Synthetic data against the standard imbalance remedies, and gaps as outcomes, in the report.

The remedies are real-only arms of the grid: balanced sampling (``sampling = "balanced"``),
class weighting (``class_weighting = "balanced"``) and focal loss (``loss = "focal"``). Two
tables and a figure:

- *Synthetic data vs the imbalance remedies*: each synthetic arm (with no remedy) against each
  remedy alone, on accuracy, with the seed-aware test and BH within that family;
- *Did this arm narrow the gap?*: each synthetic arm against its real-only baseline and against
  each remedy, and each remedy against the baseline, on the gap outcomes of
  :mod:`dermsynth.analysis.gap_outcomes` (worst group, best − worst group, worst class,
  equalised odds), with that module's seed-aware test and BH within their own family; a
  difference is oriented so that positive is better, and its verdict reads "narrowed" or
  "widened" for a gap;
- a figure of accuracy per skin-type group for each arm.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dermsynth.analysis.figures import OKABE_ITO, save_figure
from dermsynth.analysis.gap_outcomes import OUTCOMES, gap_test, outcome_interval
from dermsynth.analysis.gap_pairs import (
    NO_REMEDY,
    REMEDY_DEFAULTS,
    as_remedy_axis,
    describe_arm,
    gap_pairs,
    gap_row,
    is_remedy_study,
    run_arrays,
    with_remedies,
)
from dermsynth.analysis.main_comparison import MAIN_FAMILY, main_key, main_row
from dermsynth.analysis.report_sections import Section, fmt_table, img_tag
from dermsynth.analysis.sequential import LookView, report_view
from dermsynth.analysis.summary import arm_keys, synthetic_comparisons, varying_keys
from dermsynth.analysis.verdicts import display_view, finish_family, verdict_clause
from dermsynth.experiments.sequential_state import LOOKS_AT_MAIN

REMEDY_FAMILY = "synthetic data vs the imbalance remedies"
GAP_FAMILY = "did this arm narrow the gap? (gap outcomes, every comparison of this table)"
MAIN_LOOK_NOTE = (" The main comparison is decided by the study's sequential looks (experiment run --until-decided): "
                  "it is read on the seeds of its latest look (where it stopped, or where it stands while the looks "
                  "go on), with the stage-wise p and that look's repeated confidence interval; every other table "
                  "reads the config's planned seeds only.")


def synthetic_vs_remedies(table: pd.DataFrame, records: list[dict], test: str = "prop",
                          correct: bool = True) -> pd.DataFrame:
    """Each synthetic arm without a remedy against each remedy alone (one BH family)."""
    t = with_remedies(table)
    syn = t[(t["synthetic_per_real"] > 0) & (t["remedy"] == NO_REMEDY)]
    remedies = sorted(set(t.loc[(t["synthetic_per_real"] == 0) & (t["remedy"] != NO_REMEDY), "remedy"]))
    if syn.empty or not remedies:
        return pd.DataFrame()
    parts = []
    for name in remedies:  # the synthetic arm, presented as if it had used the remedy it is compared with
        ref = t[(t["synthetic_per_real"] == 0) & (t["remedy"] == name)]
        parts += [syn.assign(remedy=name), ref]
    comp = synthetic_comparisons(as_remedy_axis(pd.concat(parts, ignore_index=True)), records, test, correct,
                                 family=REMEDY_FAMILY)
    if comp.empty:
        return comp
    comp = comp.rename(columns={"sampling": "remedy", "acc_real_only": "acc_remedy"})
    if "remedy" not in comp:  # one remedy only: not a varying field, so no column of its own
        comp.insert(0, "remedy", remedies[0])
    return comp


def gap_comparisons(table: pd.DataFrame, records: list[dict], main: dict | None = None,
                    main_table: pd.DataFrame | None = None, view: LookView | None = None) -> pd.DataFrame:
    """Every pair of :func:`gap_pairs` on every gap outcome the task has (one BH family), but for
    the study's main comparison (``main``: arm fields and outcome, named before running), which is
    tested alone in a family of its own and comes first: on ``main_table`` (every run, where the
    rest of the report reads only the planned seeds) and, in a study whose looks decide it, at the
    look ``view`` says it stopped (analysis/main_comparison.py)."""
    by_run = {r["run_id"]: r for r in records}
    if not records:
        return pd.DataFrame()
    _, label, group = run_arrays(records[0])
    n_classes = len(records[0]["classes"])
    looked = view is not None and main is not None and main_key(main) in view.recorded
    # the looks' extra seeds only for the comparison they decided (a config naming another main
    # comparison since: that one on the planned seeds, as a fixed design)
    first = main_row(main_table if looked and main_table is not None else table, records, main,
                     view if looked else None) if main else None
    rows = [first] if first else []
    for what, arm, ref in gap_pairs(table):
        a = [run_arrays(by_run[r])[0] for r in arm["run_id"]]
        b = [run_arrays(by_run[r])[0] for r in ref["run_id"]]
        for outcome in OUTCOMES:
            if outcome in ("tpr_gap", "fpr_gap") and n_classes != 2 or (
                    first and first["comparison"] == what and first["outcome"] == outcome):
                continue
            res = gap_test(outcome, a, b, label, group, n_classes, arm["seed"].tolist(), ref["seed"].tolist())
            if not (np.isnan(res.value_a) or np.isnan(res.value_b)):
                rows.append(gap_row(what, res, len(label), arm, ref, GAP_FAMILY))
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    # each family as its own rows carry it: a sequential main row brings its stage-wise p_equiv, the
    # exploratory rows none (finish_family computes theirs only where the column is absent)
    parts = {f: frame[frame["family"] == f] for f in (MAIN_FAMILY, GAP_FAMILY) if (frame["family"] == f).any()}
    if GAP_FAMILY in parts:
        parts[GAP_FAMILY] = parts[GAP_FAMILY].drop(columns=["p_equiv"], errors="ignore")
    out = pd.concat([finish_family(part) for part in parts.values()], ignore_index=True)
    lower_better = out["outcome"].map(lambda o: OUTCOMES[o][0] < 0)
    out["seed_ci_low"], out["seed_ci_high"] = out["seed_ci_low"].clip(-1, 1), out["seed_ci_high"].clip(-1, 1)
    out.loc[lower_better & (out["verdict"] == "improved"), "verdict"] = "narrowed"
    out.loc[lower_better & (out["verdict"] == "lowered"), "verdict"] = "widened"
    return out


def cell_gaps(table: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """Per cell (arm × the grid's other axes): each gap outcome's mean over seeds and its interval."""
    if not records:
        return pd.DataFrame()
    by_run = {r["run_id"]: r for r in records}
    _, label, group = run_arrays(records[0])
    n_classes = len(records[0]["classes"])
    t = with_remedies(table)
    keys = [k for k in varying_keys(t) if k not in (*REMEDY_DEFAULTS, "focal_gamma")] + ["remedy"]
    rows = []
    for values, runs in t.groupby(keys, dropna=False):
        cell = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        correct = [run_arrays(by_run[r])[0] for r in runs["run_id"]]
        for outcome in OUTCOMES:
            if outcome in ("tpr_gap", "fpr_gap") and n_classes != 2:
                continue
            mean, lo, hi = outcome_interval(outcome, correct, label, group, n_classes)
            if not np.isnan(mean):
                rows.append({**cell, "outcome": outcome, "mean": mean, "ci_low": lo, "ci_high": hi,
                             "seeds": len(runs)})
    return pd.DataFrame(rows)


def fig_group_accuracy(table: pd.DataFrame, out: Path) -> Path | None:
    """Accuracy per skin-type group (mean over seeds) for each arm: real only per remedy, and each
    synthetic arm."""
    t = with_remedies(table)
    cols = sorted(c for c in t.columns if c.startswith("acc_group:"))
    if len(cols) < 2:
        return None
    arm = [("real only" if k == 0 else f"{int(k)} synthetic/real") + ("" if r == NO_REMEDY else f", {r}")
           for k, r in zip(t["synthetic_per_real"], t["remedy"], strict=True)]
    means = t.assign(arm=arm).groupby("arm")[cols].mean()
    fig = Figure(figsize=(max(4.5, 1.2 * len(cols) * max(1, len(means)) / 3), 3.6))
    ax = fig.subplots()
    width = 0.8 / len(means)
    for i, (name, row) in enumerate(means.iterrows()):
        ax.bar(np.arange(len(cols)) + i * width, 100 * row.to_numpy(dtype=float), width, label=name,
               color=OKABE_ITO[i % len(OKABE_ITO)])
    ax.set_xticks(np.arange(len(cols)) + 0.4 - width / 2, [c.split(":", 1)[1] for c in cols])
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy per skin-type group, each arm (mean over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, out, "group_accuracy_per_arm")


def gap_summary(remedies: pd.DataFrame, gaps: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """The summary's sentences on the remedies and the gaps: how many comparisons of each family
    were decided, then each decided one with its test, interval, BH p, seeds and test images."""
    lines = []
    if len(remedies):
        decided = remedies[remedies["verdict"].isin(("improved", "lowered"))]
        lines.append(f"Synthetic data vs the imbalance remedies (accuracy, seed-aware test, BH family: "
                     f"{REMEDY_FAMILY}; n = {int(remedies['n_test'].iloc[0])} test images per run): {len(decided)} "
                     f"of {len(remedies)} comparisons decided.")
        for _, r in decided.iterrows():
            arm = describe_arm({k: r[k] for k in ("synthetic_per_real", *arm_keys()) if k in r})
            lines.append(f"{arm} vs {r['remedy']} alone: {verdict_clause(r, alpha)}.")
    main = gaps[gaps["family"] == MAIN_FAMILY] if len(gaps) else gaps
    for _, r in main.iterrows():
        lines.insert(0, f"Main comparison, named before running (gap test, tested alone; n = {int(r['n_test'])} test "
                        f"images per run): {_gap_sentence(r)}")
    gaps = gaps[gaps["family"] != MAIN_FAMILY] if len(gaps) else gaps
    if len(gaps):
        decided = gaps[gaps["verdict"].isin(("narrowed", "widened", "improved", "lowered"))]
        lines.append(f"Did an arm narrow the gap? (gap test: seed term plus a bootstrap of the test images within "
                     f"skin-type groups; BH family: {GAP_FAMILY}; n = {int(gaps['n_test'].iloc[0])} test images "
                     f"per run): {len(decided)} of {len(gaps)} comparisons decided.")
        lines += [_gap_sentence(r) for _, r in decided.iterrows()]
    return lines


def _gap_sentence(r: pd.Series) -> str:
    p = f"BH p = {r['p_seed_bh']:.2g}" if r["family"] != MAIN_FAMILY else f"p = {r['p_seed']:.2g}"
    ci = "95 % CI"
    if np.isfinite(r.get("look", np.nan)):  # decided by a sequential study's looks (analysis/main_comparison.py)
        p = (f"stage-wise p = {r['p_seed']:.2g} at look {int(r['look'])} of {int(r['looks'])}, {r['spending']} "
             f"spending of α = 0.05" + ("; still running: more seeds to come" if r["stopped"] == "continue" else "")
             + (f"; runs changed since that look: its p is {r['p_now']:.2g} on them now"
                if np.isfinite(r.get("p_now", np.nan)) else ""))
        ci = f"{100 * r['ci_level']:.2f} % " + ("equivalence (TOST) interval" if r["stopped"] == "equivalence"
                                               else "repeated CI")
    if not np.isfinite(r["difference"]) or not np.isfinite(r.get("seed_ci_low", np.nan)):
        return f"{r['comparison']}: {OUTCOMES[r['outcome']][1]}, {r['verdict']}."
    return (f"{r['comparison']}: {OUTCOMES[r['outcome']][1]} {100 * r['value_reference']:.1f} → "
            f"{100 * r['value_arm']:.1f} %, {r['verdict']} (difference {100 * r['difference']:+.1f} points, positive = "
            f"better; {ci} {100 * r['seed_ci_low']:+.1f} to {100 * r['seed_ci_high']:+.1f}; {p}; {int(r['seeds'])} "
            "seeds per arm).")


def gap_sections(out_dir: Path, table: pd.DataFrame, records: list[dict], test: str = "prop",
                 correct: bool = True, main: dict | None = None,
                 main_table: pd.DataFrame | None = None) -> tuple[list[Section], list[str]]:
    """The tables, the figure and the summary's sentences (:func:`gap_summary`), for a study whose
    grid has a real-only remedy arm and a synthetic arm (a study without one asks no question of
    the remedies; its per-group accuracies are in the fairness section). ``main``: the config's
    [main_comparison], tested alone, on ``main_table`` where its cells have more seeds than the
    rest of the report reads (a sequential study's looks gave them)."""
    out_dir = Path(out_dir)
    sections = []
    remedies = synthetic_vs_remedies(table, records, test, correct) if is_remedy_study(table) else pd.DataFrame()
    if len(remedies):
        remedies.to_csv(out_dir / "remedy_comparisons.csv", index=False)
        sections.append(Section("Synthetic data vs the imbalance remedies", fmt_table(display_view(remedies)),
                                "Each synthetic arm without a remedy against each remedy alone on real images "
                                "(balanced sampling, class weighting, focal loss); acc_remedy is the remedy's "
                                f"accuracy. Seed-aware test; BH within this table (family: {REMEDY_FAMILY})."))
    per_cell = cell_gaps(table, records) if len(remedies) or is_remedy_study(table) else pd.DataFrame()
    if len(per_cell):
        per_cell.to_csv(out_dir / "gap_outcomes.csv", index=False)
        sections.append(Section("Gaps per cell: the worst group and the worst class", fmt_table(per_cell),
                                "Mean over seeds of each run's gap outcome, with a 95 % interval from the seed "
                                "term and a bootstrap of the test images within skin-type groups (t, seeds − 1 "
                                "df)."))
    view = report_view(out_dir, LOOKS_AT_MAIN) if main else None
    gaps = gap_comparisons(table, records, main, main_table, view) if len(per_cell) else pd.DataFrame()
    looked = view is not None and main_key(main) in view.recorded  # the looks decided this main comparison
    if len(gaps):
        gaps.to_csv(out_dir / "gap_comparisons.csv", index=False)
        fig = fig_group_accuracy(table, out_dir / "figures")
        shown = gaps[["comparison", "outcome", "value_arm", "value_reference", "difference", "seed_ci_low",
                      "seed_ci_high", "p_seed", "p_seed_bh", "seeds", "verdict", "family"]]
        sections.append(Section("Did this arm narrow the gap?", fmt_table(shown) + (img_tag(fig) if fig else ""),
                                "Gap outcomes per run: " + "; ".join(f"{k}: {v[1]}" for k, v in OUTCOMES.items())
                                + " (skin-type groups with at least 5 test images). difference is oriented so that "
                                "positive is better (a narrower gap, a higher worst group). Test: seed term plus a "
                                "bootstrap of the test images within groups, t with the seed term's df "
                                "(analysis/gap_outcomes.py); BH over every row of this table but the main "
                                f"comparison ({json.dumps(GAP_FAMILY)}), which a config names before running and "
                                f"is tested alone ({json.dumps(MAIN_FAMILY)}); n = test images per run."
                                + (MAIN_LOOK_NOTE if looked else "")))
    return sections, gap_summary(remedies, gaps)
