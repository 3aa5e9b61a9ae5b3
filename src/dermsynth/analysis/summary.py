"""From the results table to the numbers a paper reports: cell means with CIs and the
with-vs-without-synthetic comparisons (the seed-aware test that decides, the paper's
proportion test beside it, BH within each table, bootstrap CIs)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from dermsynth.analysis.seed_variance import accuracy_interval, seed_aware_test
from dermsynth.analysis.sequential import LookView
from dermsynth.analysis.verdicts import (
    NO_DIFFERENCE,
    VERDICTS,
    equivalence_p,
    finish_families,
    seed_columns,
    verdict_clause,
)
from dermsynth.stats import accuracy_ci, bootstrap_difference, compare


def add_method_column(table: pd.DataFrame) -> pd.DataFrame:
    def name(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "none"
        vals = json.loads(v) if isinstance(v, str) and v.startswith("[") else v
        return "+".join(vals) if isinstance(vals, list) else str(vals)

    t = table.copy()
    repeats = t["repeat_real"] if "repeat_real" in t else pd.Series(1, index=t.index)
    t["method"] = [(("none" if r == 1 else f"real ×{int(r)}") if k == 0 else name(m))
                   for m, k, r in zip(t["synthetic_methods"], t["synthetic_per_real"], repeats, strict=True)]
    return t


def canonical(value) -> str:
    """One spelling per value, the same under every pandas version: None and NaN are one value
    ("unset"), lists and dicts their sorted JSON, everything else ``str``. ``astype(str)`` is not
    that: pandas 2 turns None into the string "None", pandas 3 keeps it missing (and nunique
    drops it), so the same runs would get other cell keys under each major."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "<unset>"
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def distinct_values(column: pd.Series) -> int:
    """How many values a column takes; "unset" (None, NaN) is one of them: early stopping
    (``train_steps`` unset) and 200 steps are two settings. Fields that are unset *because* a run
    has no synthetic data are arm fields (:func:`arm_keys`), never cell keys."""
    return len(set(map(canonical, column)))


def varying_keys(table: pd.DataFrame, candidates=None, spec_class=None) -> list[str]:
    """Spec fields that vary across runs: the cell identity. Which fields can be cell axes is
    declared on the fields (field_roles.py: settings, not the seed, pinned inputs or how a
    run executes); ``synthetic_methods`` is read through the derived ``method`` column."""
    from dermsynth.field_roles import SETTING, fields_with
    from dermsynth.train.spec import RunSpec

    axes = set(fields_with(spec_class or RunSpec, SETTING)) - {"synthetic_methods"} | {"method"}
    cols = candidates or [c for c in table.columns if c in axes]
    return [c for c in cols if c in axes and distinct_values(table[c]) > 1]


def cell_summary(table: pd.DataFrame, ci: str = "wald", records: list[dict] | None = None) -> pd.DataFrame:
    """Mean accuracy over seeds per cell with two CIs: ``ci_low``–``ci_high`` counts seed and
    test-image variance (:func:`~dermsynth.analysis.seed_variance.accuracy_interval`, from the
    records' per-image predictions; NaN with one seed), ``paper_ci_low``–``paper_ci_high`` is the
    paper's ``ci`` interval with n = test-set size, which ignores the seeds."""
    t = add_method_column(table)
    keys = varying_keys(t)
    keys = [k for k in keys if k not in ("synthetic_classes",)] or ["method"]
    g = t.groupby(keys, dropna=False)
    aggs = dict(accuracy=("accuracy", "mean"), sd=("accuracy", "std"), runs=("accuracy", "size"),
                n_test=("n_test", "first"), balanced_accuracy=("balanced_accuracy", "mean"))
    if "auroc" in t and t["auroc"].notna().any():
        aggs["auroc"] = ("auroc", "mean")
    if "degenerate" in t:
        aggs["degenerate_runs"] = ("degenerate", lambda v: int(pd.Series(v).fillna(False).astype(bool).sum()))
    out = g.agg(**aggs).reset_index()
    interval = cell_interval(records) if records else None
    bounds = [interval(rows["run_id"]) for _, rows in g] if interval is not None else [(np.nan, np.nan)] * len(out)
    out["ci_low"], out["ci_high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    lo_hi = [accuracy_ci(p, int(n), ci) for p, n in zip(out["accuracy"], out["n_test"], strict=True)]
    out["paper_ci_low"], out["paper_ci_high"] = [x[0] for x in lo_hi], [x[1] for x in lo_hi]
    return out


def cell_interval(records: list[dict], level: float = 0.95):
    """run ids → (low, high) of their cell's accuracy CI with seed and test-image variance."""
    corr = correctness(records)

    def interval(run_ids) -> tuple[float, float]:
        mats = [corr[r] for r in run_ids if r in corr]
        if len(mats) < 2 or len({len(m) for m in mats}) != 1:
            return float("nan"), float("nan")
        _, lo, hi = accuracy_interval(np.stack(mats), level)
        return lo, hi

    return interval


def test_predictions(rec: dict) -> dict[str, np.ndarray]:
    """A record's per-image test predictions as arrays in test-id order (the order every
    paired comparison relies on): label, predicted, skin_group, probabilities, correct."""
    p = rec["predictions"]
    order = np.argsort(p["id"])
    out = {k: np.asarray(p[k], dtype=object if k == "skin_group" else None)[order]
           for k in ("label", "predicted", "skin_group", "probabilities")}
    out["correct"] = out["label"] == out["predicted"]
    return out


def correctness(records: list[dict], label: str | None = None) -> dict[str, np.ndarray]:
    """run_id → boolean vector of correct test predictions (of ``label``'s images only, when
    given), in test-id order."""
    out = {}
    for rec in records:
        t = test_predictions(rec)
        out[rec["run_id"]] = t["correct"] if label is None else t["correct"][t["label"] == label]
    return out


def arm_keys() -> list[str]:
    """What makes a cell an arm with synthetic data rather than its real-only baseline: the
    fields declared ARM on RunSpec (field_roles.py), ``synthetic_methods`` read as ``method``."""
    from dermsynth.field_roles import ARM, fields_tagged
    from dermsynth.train.spec import RunSpec

    return ["method" if f == "synthetic_methods" else f for f in fields_tagged(RunSpec, ARM)]


def matched_cells(table: pd.DataFrame, control: bool = False):
    """Yield (cell, synthetic-arm runs, reference runs) for every cell with synthetic data.

    The reference is the real-only cell equal in every other varying field or, with
    ``control``, the steps-matched control: the same real images repeated k + 1 times.
    """
    t = add_method_column(table)
    arms = arm_keys()
    for col, default in [*((k, None) for k in arms), ("repeat_real", 1)]:  # records from before a field existed
        if col not in t:
            t[col] = default
    keys = [k for k in varying_keys(t) if k not in [*arms, "repeat_real"]]
    arms = keys + arms
    base = t[t["synthetic_per_real"] == 0]
    for cell, arm in t[(t["synthetic_per_real"] > 0) & (t["repeat_real"] == 1)].groupby(arms, dropna=False):
        cell = dict(zip(arms, cell if isinstance(cell, tuple) else (cell,), strict=True))
        mask = np.array(base["repeat_real"] == (int(cell["synthetic_per_real"]) + 1 if control else 1), dtype=bool)
        for k in keys:
            want = canonical(cell[k])
            mask &= np.array([canonical(v) == want for v in base[k]], dtype=bool)
        if mask.any():
            yield cell, arm, base[mask]


MAIN_FAMILY = "with vs without synthetic data (every synthetic arm of the study)"
CONTROL_FAMILY = "synthetic data vs the steps-matched control"


def all_degenerate(*arms: pd.DataFrame) -> bool:
    """Every run of these arms predicted one class (≥ 95 % of its test images: train.metrics)."""
    flags = [bool(v) for arm in arms for v in (arm["degenerate"] if "degenerate" in arm else [False] * len(arm))
             if not pd.isna(v)]
    return bool(flags) and all(flags) and sum(len(a) for a in arms) == len(flags)


def comparison_key(cell: dict) -> str:
    """A comparison's identity across looks and reports: its arm's cell, spelt canonically."""
    return json.dumps({k: canonical(v) for k, v in cell.items()}, sort_keys=True)


def synthetic_comparisons(table: pd.DataFrame, records: list[dict], test: str = "prop", correct: bool = True,
                          reps: int = 1000, control: bool = False, family: str | None = None,
                          sequential: LookView | None = None) -> pd.DataFrame:
    """Every cell with synthetic data vs the real-only cell that matches it in all other fields
    (or, with ``control``, vs its steps-matched control; then ``acc_real_only`` is the control's).

    Each row carries the paper's test (``p_value``) and the seed-aware test (``p_seed``, paired
    by seed: a seed draws the same real subset in both arms), each BH-adjusted over the whole
    family returned (one figure's comparisons), and the verdict the seed-aware test gives.
    ``sequential``: a sequential study's looks — each comparison on the seeds of the look it
    stopped at, with its stage-wise p-values (analysis/sequential.py).
    """
    corr = correctness(records)
    rows = []
    for cell, arm, ref in matched_cells(table, control):
        key = comparison_key(cell)
        seeds = sequential.seeds_for(key) if sequential is not None else None
        if seeds is not None:
            arm, ref = arm[arm["seed"].isin(seeds)], ref[ref["seed"].isin(seeds)]
            if not len(arm) or not len(ref):
                continue
        n = int(arm["n_test"].iloc[0])
        pa, pb = float(arm["accuracy"].mean()), float(ref["accuracy"].mean())
        res = compare(pa, pb, n, test, correct)
        a = np.stack([corr[r] for r in arm["run_id"]])
        b = np.stack([corr[r] for r in ref["run_id"]])
        diff, lo, hi = bootstrap_difference(a, b, reps=reps, seeds_a=arm["seed"].tolist(),
                                            seeds_b=ref["seed"].tolist())
        seed = seed_aware_test(a, b, arm["seed"].tolist(), ref["seed"].tolist())
        row = {**cell, "acc_synthetic": pa, "acc_real_only": pb, "difference": diff, "diff_ci_low": lo,
               "diff_ci_high": hi, "p_value": res.p_value, "runs": len(arm), "n_test": n,
               "degenerate": all_degenerate(arm, ref), **seed_columns(seed)}
        if sequential is not None:
            p_equiv = (float("nan") if row["degenerate"] else
                       equivalence_p(seed.difference, seed.se, seed.df))
            row.update({"comparison_key": key, "p_equiv": p_equiv,
                        **sequential.columns(key, seed.p_value, p_equiv)})
        rows.append(row)
    return finish_families(pd.DataFrame(rows), name=family or (CONTROL_FAMILY if control else MAIN_FAMILY))


RESULT_COLUMNS = ("acc_synthetic", "acc_real_only", "difference", "diff_ci_low", "diff_ci_high", "p_value", "p_bh",
                  "runs", "n_test", "p_seed", "p_seed_bh", "seed_ci_low", "seed_ci_high", "seed_sd", "seed_df",
                  "seed_image_var", "detectable", "paired_seeds", "seeds", "verdict", "seeds_for_effect", "family",
                  "seed_se", "p_equiv", "p_equiv_bh", "degenerate", "comparison_key", "look", "looks",
                  "stopped", "alpha_spent", "spending")
GENERATOR_NAMES = {"none": "pretrained generator", "all": "generator fine-tuned on the pool",
                   "per-class": "generator fine-tuned per class"}


def plain_summary(comp: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """A count of verdicts, then one sentence per comparison naming its whole cell, e.g.
    'Adding 2 synthetic per real (inpaint, transforms off), 16 real per class: 44.6 % → 54.7 %,
    +10.1 points, inconclusive: the seeds cannot support a verdict (…); the paper's test finds …'.

    Verdicts come from the seed-aware test (BH within the table); the paper's test is named
    where it disagrees."""
    if comp is None or not len(comp):
        return ["No comparison with and without synthetic data was run."]
    lines = []
    # every arm field that varies splits the sentences (without it, a fig3_paper study's pretrained
    # and fine-tuned generators merge into one "at 1 and 1 and 2 and 2" sentence)
    group_keys = [k for k in ("method", "generator_finetune", "synthetic_per_real", "transforms")
                  if k in comp.columns and (k != "generator_finetune" or comp[k].nunique() > 1)]
    extra = [k for k in comp.columns if k not in (*group_keys, "n_real", *RESULT_COLUMNS)]
    group_keys += [k for k in extra if distinct_values(comp[k]) > 1]
    counts = comp["verdict"].value_counts() if "verdict" in comp else pd.Series(dtype=int)
    families = comp["family"].nunique() if "family" in comp else 1
    scope = "BH within the table" if families == 1 else f"BH within each of {families} generator variants"
    lines.append(f"{len(comp)} comparisons with vs without synthetic data (seed-aware test, {scope}): "
                 + ", ".join(f"{int(counts.get(v, 0))} {v}" for v in VERDICTS if counts.get(v, 0)) + ".")
    for key, rows in comp.groupby(group_keys, dropna=False):
        key = dict(zip(group_keys, key if isinstance(key, tuple) else (key,), strict=True))
        where = f"adding {key.get('synthetic_per_real')} synthetic per real ({key.get('method')}"
        if "generator_finetune" in key:
            where += ", " + GENERATOR_NAMES.get(str(key["generator_finetune"]), str(key["generator_finetune"]))
        where += "".join(f", {k} {v}" for k, v in key.items() if k in extra)
        if "transforms" in key:
            where += ", transforms " + ("on" if str(key["transforms"]) in ("True", "true", "1") else "off")
        where += ")"
        at = rows.sort_values("n_real") if "n_real" in rows else rows
        for _, r in at.iterrows():
            cell = f", {int(r['n_real'])} real per class" if "n_real" in r else ""
            lines.append(f"{where[0].upper()}{where[1:]}{cell}: {100 * r['acc_real_only']:.1f} % → "
                         f"{100 * r['acc_synthetic']:.1f} %, {verdict_clause(r, alpha)}.")
    return lines


def headline_answer(comp: pd.DataFrame, method: str = "text-to-image") -> str | None:
    """One sentence answering "did synthetic data help here, and by how much?" for a study's
    headline comparison: ``method`` at the smallest n_real (else the first comparison), with its
    seed-aware interval and verdict from the report's family. None without comparisons."""
    if comp is None or not len(comp):
        return None
    rows = comp[comp["method"] == method] if "method" in comp and (comp["method"] == method).any() else comp
    if "n_real" in rows:
        rows = rows.sort_values("n_real", kind="stable")
    r = rows.iloc[0]
    cell = f" at {int(r['n_real'])} real images per class" if "n_real" in r else ""
    what = (f"{r['method']} synthetic data ({int(r['synthetic_per_real'])} per real)" if "method" in r
            else "synthetic data")
    verdict = r["verdict"]
    answer = {"improved": "yes", "lowered": "no, it lowered accuracy", NO_DIFFERENCE: "no"}.get(verdict, "cannot tell")
    return (f"Did synthetic data help? {answer.capitalize()}: {what}{cell}, "
            f"{100 * r['acc_real_only']:.1f} % → {100 * r['acc_synthetic']:.1f} %, {verdict_clause(r)}.")
