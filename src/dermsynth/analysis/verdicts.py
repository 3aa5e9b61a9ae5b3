"""What a comparison table claims: the seed-aware test decides, the paper's test is shown beside it.

Every comparison table of a report (with vs without synthetic data, vs the steps-matched
control, per skin-type group, the imbalance arms) gets the same columns from here, so that
the summary, the figure stars and the tables cannot disagree about a verdict:

- ``p_value`` / ``p_bh``: the paper's proportion test, BH-adjusted within the table (its family);
- ``p_seed`` / ``p_seed_bh``: the seed-aware test (:mod:`dermsynth.analysis.seed_variance`),
  BH-adjusted within the same table, and its CI ``seed_ci_low``–``seed_ci_high``;
- ``detectable``: the effect this design detects with 80 % power, from its own seed variance;
- ``p_equiv`` / ``p_equiv_bh``: the equivalence test (two one-sided t tests against
  ±``effect_of_interest``, the p being the larger of the two), BH-adjusted within the same family,
  so that the "no difference" claims of a family are controlled as its "improved" claims are;
- ``verdict``: ``improved`` / ``lowered`` (seed-aware BH p < α), ``no difference ≥ 5 points``
  (not significant, and the family-adjusted equivalence p < α — not post-hoc power, which would
  call an observed effect just under the margin "no difference" in a share of simulated studies
  far from negligible: docs/benchmarks.md),
  ``inconclusive`` (neither: the seeds cannot support a verdict either way), ``untestable`` (one
  seed per arm, or per-seed differences that tie exactly: no seed variance to test against) or
  ``not comparable`` (every run of both arms predicted one class for ≥ 95 % of its test images,
  train/metrics.py's degenerate runs: neither classifier learnt
  anything, so there is no accuracy difference to speak of and no power figure).

Each comparison belongs to exactly one family, named in the ``family`` column; a report
computes each family once and every table, figure and sentence that shows a comparison shows
that family's adjusted p and verdict.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from dermsynth.analysis.seed_variance import SeedAwareResult, detectable_effect, seed_sd_upper, seeds_needed
from dermsynth.stats import bh_adjust

ALPHA = 0.05
# A gain of 5 accuracy points is what the paper's comparisons are about: "no difference" is
# said only when an equivalence test rules out 5 points either way.
EFFECT_OF_INTEREST = 0.05
NO_DIFFERENCE = f"no difference ≥ {round(100 * EFFECT_OF_INTEREST)} points"
NOT_COMPARABLE = "not comparable"
VERDICTS = ("improved", "lowered", NO_DIFFERENCE, "inconclusive", "untestable", NOT_COMPARABLE)


def seed_columns(res: SeedAwareResult) -> dict:
    """The per-row seed-aware columns of a comparison table."""
    return {"p_seed": res.p_value, "seed_ci_low": res.ci_low, "seed_ci_high": res.ci_high, "seed_se": res.se,
            "seed_sd": res.seed_sd, "seed_df": res.df, "seed_image_var": res.image_variance,
            "detectable": detectable_effect(res.se, res.df), "paired_seeds": res.paired,
            "seeds": min(res.seeds_a, res.seeds_b)}


def finish_family(table: pd.DataFrame, alpha: float = ALPHA, effect_of_interest: float = EFFECT_OF_INTEREST
                  ) -> pd.DataFrame:
    """BH-adjust both tests and the equivalence test within ``table`` (one family) and add each
    row's verdict. Rows marked ``degenerate`` (every run of both arms predicted one class) are
    left out of the family: their verdict is ``not comparable``."""
    out = table.copy()
    if not len(out):
        return out
    degenerate = (out["degenerate"].fillna(False).astype(bool).to_numpy() if "degenerate" in out
                  else np.zeros(len(out), dtype=bool))
    if "p_value" in out:
        out["p_bh"] = bh_adjust(out["p_value"])
    p_seed = np.where(degenerate, np.nan, out["p_seed"].to_numpy(dtype=float))
    adj = bh_adjust(p_seed)  # untestable rows stay NaN, outside the family
    out["p_seed_bh"] = adj
    if "p_equiv" not in out:  # a sequential study's rows bring their stage-wise one (analysis/sequential.py)
        out["p_equiv"] = [np.nan if deg else equivalence_p(d, se, df, effect_of_interest)
                          for d, se, df, deg in zip(out["difference"], out["seed_se"], out["seed_df"], degenerate,
                                                    strict=True)]
    out["p_equiv_bh"] = bh_adjust(out["p_equiv"])
    out["verdict"] = [NOT_COMPARABLE if deg else verdict(q, d, q_eq, alpha, effect_of_interest)
                      for q, d, q_eq, deg in zip(adj, out["difference"], out["p_equiv_bh"], degenerate, strict=True)]
    out["seeds_for_effect"] = [np.nan if deg else _seeds_for(r, effect_of_interest)
                               for deg, (_, r) in zip(degenerate, out.iterrows(), strict=True)]
    if degenerate.any():
        out.loc[degenerate, "detectable"] = np.nan
    return out


def finish_families(table: pd.DataFrame, by: str = "generator_finetune", alpha: float = ALPHA,
                    effect_of_interest: float = EFFECT_OF_INTEREST, name: str = "all comparisons of this table"
                    ) -> pd.DataFrame:
    """:func:`finish_family` within each value of ``by`` (one BH family per generator variant:
    pretrained and fine-tuned generators answer different questions, as in the paper's Fig. 3);
    the ``family`` column names each row's family (``name``, and the variant when there are several)."""
    if not len(table) or by not in table or table[by].nunique(dropna=True) < 2:
        out = finish_family(table, alpha, effect_of_interest)
        if len(out):
            out["family"] = name
        return out
    parts = [finish_family(part, alpha, effect_of_interest).assign(family=f"{name}, {by} = {value}")
             for value, part in table.groupby(by, dropna=False)]
    return pd.concat(parts).sort_index()


def verdict(p_seed_bh: float, difference: float, p_equiv_bh: float = float("nan"), alpha: float = ALPHA,
            effect_of_interest: float = EFFECT_OF_INTEREST) -> str:
    """One comparison's verdict from its family-adjusted p-values (difference and equivalence)."""
    if not np.isfinite(p_seed_bh):
        return "untestable"
    if p_seed_bh < alpha:
        return "improved" if difference > 0 else "lowered"
    if np.isfinite(p_equiv_bh) and p_equiv_bh < alpha:
        return f"no difference ≥ {round(100 * effect_of_interest)} points"
    return "inconclusive"


def equivalence_p(difference: float, se: float, df: float, margin: float = EFFECT_OF_INTEREST) -> float:
    """p of two one-sided t tests that the true difference lies within ±``margin`` (the larger of
    the two one-sided p-values: TOST); NaN where the spread is unknown (a zero SE is not exact)."""
    if not (np.isfinite(se) and se > 0 and np.isfinite(df) and df > 0):
        return float("nan")
    lower = stats.t.sf((difference + margin) / se, df)  # H0: difference ≤ −margin
    upper = stats.t.cdf((difference - margin) / se, df)  # H0: difference ≥ +margin
    return float(max(lower, upper))


def equivalent(difference: float, se: float, df: float, alpha: float = ALPHA,
               margin: float = EFFECT_OF_INTEREST) -> bool:
    """TOST at ``alpha`` for one comparison alone: the (1 − 2α) seed-aware CI lies within ±``margin``."""
    p = equivalence_p(difference, se, df, margin)
    return bool(np.isfinite(p) and p < alpha)


def _seeds_for(row: pd.Series, effect: float) -> float:
    sd = float(row.get("seed_sd", np.nan))
    if not (np.isfinite(sd) and sd > 0):  # no seeds-needed figure from an unknown or zero variance
        return np.nan
    # planned from the sd's 90 % upper bound: a point estimate from few seeds is too uncertain
    # to plan from
    seeds = row.get("seeds")
    if seeds is not None and not pd.isna(seeds) and int(seeds) >= 2:
        sd = seed_sd_upper(sd, int(seeds))
    n = seeds_needed(effect, sd, float(row.get("seed_image_var", 0.0) or 0.0))
    return float(n) if n is not None else np.inf


def significant(table: pd.DataFrame, alpha: float = ALPHA) -> pd.Series:
    """Rows whose seed-aware verdict is a significant change (what stars and sentences mark)."""
    if "p_seed_bh" in table:
        return table["p_seed_bh"].fillna(1.0) < alpha
    return table["p_bh"] < alpha


def verdict_clause(row: pd.Series, alpha: float = ALPHA, effect_of_interest: float = EFFECT_OF_INTEREST,
                   seeds_word: str = "seeds") -> str:
    """One clause: effect, seed-aware CI and p, the verdict, and the paper's test where it disagrees."""
    d = 100 * float(row["difference"])
    v = row["verdict"]
    n_seeds = row.get("seeds")
    seeds = f"{int(n_seeds)} {seeds_word} per arm" if n_seeds is not None and not pd.isna(n_seeds) else seeds_word
    if v == "untestable":
        text = (f"{d:+.1f} points, but the seed-to-seed variance cannot be estimated (one run per arm, or per-seed "
                "differences that tie exactly): no verdict (run more seeds)")
    elif v == NOT_COMPARABLE:
        text = (f"{d:+.1f} points, not comparable: every run of both arms predicted a single class (for ≥ 95 % of "
                "its test images), so neither "
                "classifier learnt to tell the classes apart and no accuracy difference or power can be read from "
                "them (train longer, or check the data)")
    else:
        ci = f"seed-aware 95 % CI {100 * row['seed_ci_low']:+.1f} to {100 * row['seed_ci_high']:+.1f}"
        p = f"BH p = {row['p_seed_bh']:.2g}, {seeds}"
        if v in ("improved", "lowered"):
            text = f"{v} by {abs(d):.1f} points ({ci}; {p})"
        elif v.startswith("no difference"):
            margin = round(100 * effect_of_interest)
            text = (f"no difference of {margin} points or more ({d:+.1f} points, {ci}; {p}; equivalence test "
                    f"against ±{margin} points, BH p = {row['p_equiv_bh']:.2g} within the family)")
        else:
            need = row.get("seeds_for_effect", np.nan)
            more = ("" if not np.isfinite(need) else f"; ≈ {int(need)} seeds per arm would detect "
                    f"{100 * effect_of_interest:.0f} points, planned from the seed sd's 90 % upper bound")
            if need == np.inf:
                more = f"; more than 200 seeds per arm would be needed for {100 * effect_of_interest:.0f} points"
            det = row["detectable"]
            power_text = (f"80 % power only for effects ≥ {100 * det:.0f} points" if np.isfinite(det) and det <= 1
                          else "no effect is detectable with 80 % power" if np.isfinite(det) else "power unknown")
            text = (f"{d:+.1f} points, inconclusive: the seeds cannot support a verdict ({ci}; {p}; "
                    f"{power_text}{more})")
    text += sequential_clause(row)
    if "p_bh" in row and np.isfinite(row["p_bh"]):
        paper_sig = row["p_bh"] < alpha
        seed_sig = v in ("improved", "lowered")
        if paper_sig and not seed_sig:
            text += (f"; the paper's test finds {d:+.1f} points (BH p = {row['p_bh']:.2g}), but across seeds the "
                     "effect is not stable")
        elif seed_sig and not paper_sig:
            text += f"; the paper's test, which ignores the seed pairing, does not (BH p = {row['p_bh']:.2g})"
    return text


STOPS = {"difference": "its difference crossed the boundary", "equivalence": "its equivalence test crossed the "
         "boundary", "last look": "at the last look", "continue": "still running", "not comparable": "not comparable"}


def sequential_clause(row: pd.Series) -> str:
    """Where a sequential study decided this comparison ('decided at look 2 of 3, …'); empty otherwise."""
    look = row.get("look")
    if look is None or pd.isna(look):
        return ""
    stop = str(row.get("stopped", ""))
    when = "reached" if stop in ("continue", "last look") else "decided"
    return (f"; sequential design: {when} at look {int(look)} of {int(row['looks'])} ({STOPS.get(stop, stop)}), "
            f"{int(row['seeds'])} seeds per arm, {row.get('spending', '')} spending, α spent by then "
            f"{row['alpha_spent']:.3g}; p-values stage-wise")


# Columns of the CSVs that the report's tables leave out (the bootstrap CI and the unadjusted
# p-values stay in OUT/*comparisons.csv).
HIDDEN = ("diff_ci_low", "diff_ci_high", "p_value", "p_seed", "seed_sd", "seed_se", "seed_df", "seed_image_var",
          "paired_seeds", "seeds_for_effect", "p_equiv", "degenerate", "comparison_key", "looks", "spending")


def display_view(table: pd.DataFrame) -> pd.DataFrame:
    """A comparison table as the report shows it: the seed-aware CI, both BH-adjusted p-values
    under names that say which test, the detectable effect and the verdict."""
    out = table.drop(columns=[c for c in HIDDEN if c in table.columns])
    return out.rename(columns={"p_bh": "p_paper_test_bh", "p_seed_bh": "p_seed_aware_bh",
                               "p_equiv_bh": "p_equivalence_bh", "detectable": "detectable_80pct"})
