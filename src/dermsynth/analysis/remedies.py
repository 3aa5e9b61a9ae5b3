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
from dermsynth.analysis.report_sections import Section, fmt_table, img_tag
from dermsynth.analysis.summary import (
    add_method_column,
    all_degenerate,
    arm_keys,
    canonical,
    matched_cells,
    synthetic_comparisons,
    test_predictions,
    varying_keys,
)
from dermsynth.analysis.verdicts import display_view, finish_family, verdict_clause

REMEDY_DEFAULTS = {"sampling": "uniform", "class_weighting": "none", "loss": "cross_entropy"}
REMEDY_FAMILY = "synthetic data vs the imbalance remedies"
GAP_FAMILY = "did this arm narrow the gap? (gap outcomes, every comparison of this table)"
MAIN_FAMILY = "the main comparison, named before running (tested alone)"
NO_REMEDY = "none"


def remedy_label(row: pd.Series) -> str:
    """The remedies a run used, in words ("none" for plain cross-entropy and uniform batches)."""
    parts = []
    if row.get("sampling", "uniform") == "balanced":
        parts.append("balanced sampling")
    if row.get("class_weighting", "none") == "balanced":
        parts.append("class weighting")
    if row.get("loss", "cross_entropy") == "focal":
        parts.append(f"focal loss (γ = {float(row.get('focal_gamma', 2.0)):g})")
    return " + ".join(parts) or NO_REMEDY


def with_remedies(table: pd.DataFrame) -> pd.DataFrame:
    """The results table with every remedy field (records from before a field existed: its default)."""
    t = add_method_column(table)
    for col, default in {**REMEDY_DEFAULTS, "focal_gamma": 2.0}.items():
        t[col] = t[col].fillna(default) if col in t else default
    return t.assign(remedy=[remedy_label(r) for _, r in t.iterrows()])


def is_remedy_study(table: pd.DataFrame) -> bool:
    t = with_remedies(table)
    return bool(((t["synthetic_per_real"] == 0) & (t["remedy"] != NO_REMEDY)).any()
                and (t["synthetic_per_real"] > 0).any())


def _as_remedy_axis(t: pd.DataFrame) -> pd.DataFrame:
    """The remedy as one matching field (``sampling`` holds its label; the other remedy fields are
    made equal), so that matched_cells pairs an arm with the real-only cell of the same remedy."""
    return t.assign(sampling=t["remedy"], class_weighting="none", loss="cross_entropy", focal_gamma=2.0)


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
    comp = synthetic_comparisons(_as_remedy_axis(pd.concat(parts, ignore_index=True)), records, test, correct,
                                 family=REMEDY_FAMILY)
    if comp.empty:
        return comp
    comp = comp.rename(columns={"sampling": "remedy", "acc_real_only": "acc_remedy"})
    if "remedy" not in comp:  # one remedy only: not a varying field, so no column of its own
        comp.insert(0, "remedy", remedies[0])
    return comp


def _arrays(rec: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = test_predictions(rec)
    classes = list(rec["classes"])
    return t["correct"], np.array([classes.index(x) for x in t["label"]]), t["skin_group"]


def _pairs(table: pd.DataFrame):
    """(what, arm runs, reference runs) for the gap comparisons: synthetic vs its baseline (same
    remedy), synthetic without a remedy vs each remedy, and each remedy vs no remedy."""
    t = with_remedies(table)
    for cell, arm, ref in matched_cells(t):
        yield f"{_describe(cell)} vs real only ({arm['remedy'].iloc[0]})", arm, ref
    remedies = sorted(set(t.loc[(t["synthetic_per_real"] == 0) & (t["remedy"] != NO_REMEDY), "remedy"]))
    syn = t[(t["synthetic_per_real"] > 0) & (t["remedy"] == NO_REMEDY)]
    if remedies and len(syn):
        tagged = _as_remedy_axis(pd.concat([syn.assign(remedy=r) for r in remedies]
                                           + [t[(t["synthetic_per_real"] == 0) & (t["remedy"] == r)]
                                              for r in remedies], ignore_index=True))
        for cell, arm, ref in matched_cells(tagged):
            yield f"{_describe(cell, with_remedy=False)} vs {ref['remedy'].iloc[0]} alone", arm, ref
    real = t[t["synthetic_per_real"] == 0]
    plain = real[real["remedy"] == NO_REMEDY]
    keys = [k for k in varying_keys(real) if k not in (*REMEDY_DEFAULTS, "focal_gamma", *arm_keys())]
    for name in remedies:
        cell = real[real["remedy"] == name]
        for values, arm in cell.groupby(keys, dropna=False) if keys else [((), cell)]:
            ref = plain
            for k, v in zip(keys, values if isinstance(values, tuple) else (values,), strict=True):
                ref = ref[[canonical(x) == canonical(v) for x in ref[k]]]  # unset (NaN) equals unset
            if len(ref):
                yield f"{name} vs no remedy" + "".join(f", {k} {v}" for k, v in zip(keys, np.atleast_1d(values),
                                                                                       strict=False)), arm, ref


def _describe(cell: dict, with_remedy: bool = True) -> str:
    skip = {"synthetic_per_real", "sampling", "class_weighting", "loss", "focal_gamma", "remedy"}
    extra = [f"{k} {v}" for k, v in cell.items()  # the arm's other fields, where not at their defaults
             if k not in skip and v is not None and v == v and str(v) not in ("none", "per_real", "None")]
    return f"{int(cell['synthetic_per_real'])} synthetic per real" + (f" ({', '.join(extra)})" if extra else "")


def is_main(main: dict | None, what: str, arm: pd.DataFrame, outcome: str) -> bool:
    """Whether a comparison is the study's main one: its arm's runs have every field ``main``
    names, its reference is real only without a remedy, and the outcome is ``main``'s."""
    if not main or outcome != main["outcome"] or not what.endswith(f"vs real only ({NO_REMEDY})"):
        return False
    return all(k in arm and all(canonical(x) == canonical(v) for x in arm[k]) for k, v in main["arm"].items())


def gap_comparisons(table: pd.DataFrame, records: list[dict], main: dict | None = None) -> pd.DataFrame:
    """Every pair of :func:`_pairs` on every gap outcome the task has (one BH family), but for the
    study's main comparison (``main``: arm fields and outcome, named before running), which is
    tested alone in a family of its own and comes first."""
    by_run = {r["run_id"]: r for r in records}
    if not records:
        return pd.DataFrame()
    _, label, group = _arrays(records[0])
    n_classes = len(records[0]["classes"])
    rows = []
    for what, arm, ref in _pairs(table):
        a = [_arrays(by_run[r])[0] for r in arm["run_id"]]
        b = [_arrays(by_run[r])[0] for r in ref["run_id"]]
        for outcome in OUTCOMES:
            if outcome in ("tpr_gap", "fpr_gap") and n_classes != 2:
                continue
            res = gap_test(outcome, a, b, label, group, n_classes, arm["seed"].tolist(), ref["seed"].tolist())
            if np.isnan(res.value_a) or np.isnan(res.value_b):
                continue
            rows.append({"comparison": what, "outcome": outcome, "value_arm": res.value_a,
                         "value_reference": res.value_b, "difference": res.difference, "p_seed": res.p_value,
                         "seed_ci_low": res.ci_low, "seed_ci_high": res.ci_high, "seed_se": res.se,
                         "seed_df": res.df, "seed_sd": res.seed_sd, "seed_image_var": res.image_variance,
                         "seeds": res.seeds, "n_test": len(label), "degenerate": all_degenerate(arm, ref),
                         "family": MAIN_FAMILY if is_main(main, what, arm, outcome) else GAP_FAMILY})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    out = pd.concat([finish_family(frame[frame["family"] == f]) for f in (MAIN_FAMILY, GAP_FAMILY)
                     if (frame["family"] == f).any()], ignore_index=True)
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
    _, label, group = _arrays(records[0])
    n_classes = len(records[0]["classes"])
    t = with_remedies(table)
    keys = [k for k in varying_keys(t) if k not in (*REMEDY_DEFAULTS, "focal_gamma")] + ["remedy"]
    rows = []
    for values, runs in t.groupby(keys, dropna=False):
        cell = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        correct = [_arrays(by_run[r])[0] for r in runs["run_id"]]
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
            arm = _describe({k: r[k] for k in ("synthetic_per_real", *arm_keys()) if k in r})
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
    if not np.isfinite(r["difference"]) or not np.isfinite(r.get("seed_ci_low", np.nan)):
        return f"{r['comparison']}: {OUTCOMES[r['outcome']][1]}, {r['verdict']}."
    return (f"{r['comparison']}: {OUTCOMES[r['outcome']][1]} {100 * r['value_reference']:.1f} → "
            f"{100 * r['value_arm']:.1f} %, {r['verdict']} (difference {100 * r['difference']:+.1f} points, positive = "
            f"better; 95 % CI {100 * r['seed_ci_low']:+.1f} to {100 * r['seed_ci_high']:+.1f}; {p}; {int(r['seeds'])} "
            "seeds per arm).")


def gap_sections(out_dir: Path, table: pd.DataFrame, records: list[dict], test: str = "prop",
                 correct: bool = True, main: dict | None = None) -> tuple[list[Section], list[str]]:
    """The tables, the figure and the summary's sentences (:func:`gap_summary`), for a study whose
    grid has a real-only remedy arm and a synthetic arm (a study without one asks no question of
    the remedies; its per-group accuracies are in the fairness section). ``main``: the config's
    [main_comparison], tested alone."""
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
    gaps = gap_comparisons(table, records, main) if len(per_cell) else pd.DataFrame()
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
                                f"is tested alone ({json.dumps(MAIN_FAMILY)}); n = test images per run."))
    return sections, gap_summary(remedies, gaps)
