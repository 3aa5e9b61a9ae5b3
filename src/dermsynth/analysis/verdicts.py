"""What a comparison table claims: the seed-aware test decides, the paper's test is shown beside it.

Every comparison table of a report (with vs without synthetic data, vs the steps-matched
control, per skin-type group, the imbalance arms) gets the same columns from here, so that
the summary, the figure stars and the tables cannot disagree about a verdict:

- ``p_value`` / ``p_bh``: the paper's proportion test, BH-adjusted within the table (its family);
- ``p_seed`` / ``p_seed_bh``: the seed-aware test (:mod:`dermsynth.analysis.seed_variance`),
  BH-adjusted within the same table, and its CI ``seed_ci_low``–``seed_ci_high``;
- ``detectable``: the effect this design detects with 80 % power, from its own seed variance;
- ``verdict``: ``improved`` / ``lowered`` (seed-aware BH p < α), ``no difference ≥ 5 points``
  (not significant, and an equivalence test says so: the 90 % seed-aware CI lies within
  ±``effect_of_interest`` — two one-sided tests, not post-hoc power, which would call an
  observed 4.5-point effect "no difference" in 6–8 % of simulated studies), ``inconclusive``
  (neither: the seeds cannot support a verdict either way) or ``untestable`` (one seed per arm,
  or tied per-seed differences: no seed variance to test against).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from dermsynth.analysis.seed_variance import SeedAwareResult, detectable_effect, seeds_needed
from dermsynth.analysis.stats import bh_adjust

ALPHA = 0.05
# A gain of 5 accuracy points is what the paper's comparisons are about: "no difference" is
# said only when an equivalence test rules out 5 points either way.
EFFECT_OF_INTEREST = 0.05
NO_DIFFERENCE = f"no difference ≥ {round(100 * EFFECT_OF_INTEREST)} points"
VERDICTS = ("improved", "lowered", NO_DIFFERENCE, "inconclusive", "untestable")


def seed_columns(res: SeedAwareResult) -> dict:
    """The per-row seed-aware columns of a comparison table."""
    return {"p_seed": res.p_value, "seed_ci_low": res.ci_low, "seed_ci_high": res.ci_high, "seed_se": res.se,
            "seed_sd": res.seed_sd, "seed_df": res.df, "seed_image_var": res.image_variance,
            "detectable": detectable_effect(res.se, res.df), "paired_seeds": res.paired,
            "seeds": min(res.seeds_a, res.seeds_b)}


def finish_family(table: pd.DataFrame, alpha: float = ALPHA, effect_of_interest: float = EFFECT_OF_INTEREST
                  ) -> pd.DataFrame:
    """BH-adjust both tests within ``table`` (one family) and add each row's verdict."""
    out = table.copy()
    if not len(out):
        return out
    if "p_value" in out:
        out["p_bh"] = bh_adjust(out["p_value"])
    adj = bh_adjust(out["p_seed"].to_numpy(dtype=float))  # untestable rows stay NaN, outside the family
    out["p_seed_bh"] = adj
    out["verdict"] = [verdict(q, d, se, df, alpha, effect_of_interest)
                      for q, d, se, df in zip(adj, out["difference"], out["seed_se"], out["seed_df"], strict=True)]
    out["seeds_for_effect"] = [_seeds_for(r, effect_of_interest) for _, r in out.iterrows()]
    return out


def finish_families(table: pd.DataFrame, by: str = "generator_finetune", alpha: float = ALPHA,
                    effect_of_interest: float = EFFECT_OF_INTEREST) -> pd.DataFrame:
    """:func:`finish_family` within each value of ``by`` (one BH family per generator variant:
    pretrained and fine-tuned generators answer different questions, as in the paper's Fig. 3);
    the ``family`` column names each row's family."""
    if not len(table) or by not in table or table[by].nunique(dropna=True) < 2:
        out = finish_family(table, alpha, effect_of_interest)
        if len(out):
            out["family"] = "all comparisons of this table"
        return out
    parts = [finish_family(part, alpha, effect_of_interest).assign(family=f"{by} = {value}")
             for value, part in table.groupby(by, dropna=False)]
    return pd.concat(parts).sort_index()


def verdict(p_seed_bh: float, difference: float, se: float, df: float, alpha: float = ALPHA,
            effect_of_interest: float = EFFECT_OF_INTEREST) -> str:
    if not np.isfinite(p_seed_bh):
        return "untestable"
    if p_seed_bh < alpha:
        return "improved" if difference > 0 else "lowered"
    if equivalent(difference, se, df, alpha, effect_of_interest):
        return f"no difference ≥ {round(100 * effect_of_interest)} points"
    return "inconclusive"


def equivalent(difference: float, se: float, df: float, alpha: float = ALPHA,
               margin: float = EFFECT_OF_INTEREST) -> bool:
    """Two one-sided tests at ``alpha``: the (1 − 2α) seed-aware CI lies within ±``margin``."""
    if not (np.isfinite(se) and se > 0 and np.isfinite(df) and df > 0):  # a zero spread is unknown, not exact
        return False
    half = float(stats.t.ppf(1 - alpha, df)) * se
    return -margin < difference - half and difference + half < margin


def _seeds_for(row: pd.Series, effect: float) -> float:
    sd = float(row.get("seed_sd", np.nan))
    if not np.isfinite(sd):
        return np.nan
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
    else:
        ci = f"seed-aware 95 % CI {100 * row['seed_ci_low']:+.1f} to {100 * row['seed_ci_high']:+.1f}"
        p = f"BH p = {row['p_seed_bh']:.2g}, {seeds}"
        if v in ("improved", "lowered"):
            text = f"{v} by {abs(d):.1f} points ({ci}; {p})"
        elif v.startswith("no difference"):
            margin = round(100 * effect_of_interest)
            text = (f"no difference of {margin} points or more ({d:+.1f} points, {ci}; {p}; equivalence test: the "
                    f"90 % CI lies within ±{margin} points)")
        else:
            need = row.get("seeds_for_effect", np.nan)
            more = ("" if not np.isfinite(need) else f"; ≈ {int(need)} seeds per arm would detect "
                    f"{100 * effect_of_interest:.0f} points")
            if need == np.inf:
                more = f"; more than 200 seeds per arm would be needed for {100 * effect_of_interest:.0f} points"
            det = row["detectable"]
            power_text = (f"80 % power only for effects ≥ {100 * det:.0f} points" if np.isfinite(det) and det <= 1
                          else "no effect is detectable with 80 % power" if np.isfinite(det) else "power unknown")
            text = (f"{d:+.1f} points, inconclusive: the seeds cannot support a verdict ({ci}; {p}; "
                    f"{power_text}{more})")
    if "p_bh" in row and np.isfinite(row["p_bh"]):
        paper_sig = row["p_bh"] < alpha
        seed_sig = v in ("improved", "lowered")
        if paper_sig and not seed_sig:
            text += (f"; the paper's test finds {d:+.1f} points (BH p = {row['p_bh']:.2g}), but across seeds the "
                     "effect is not stable")
        elif seed_sig and not paper_sig:
            text += f"; the paper's test, which ignores the seed pairing, does not (BH p = {row['p_bh']:.2g})"
    return text


# Columns of the CSVs that the report's tables leave out (the bootstrap CI and the unadjusted
# p-values stay in OUT/*comparisons.csv).
HIDDEN = ("diff_ci_low", "diff_ci_high", "p_value", "p_seed", "seed_sd", "seed_se", "seed_df", "seed_image_var",
          "paired_seeds", "seeds_for_effect")


def display_view(table: pd.DataFrame) -> pd.DataFrame:
    """A comparison table as the report shows it: the seed-aware CI, both BH-adjusted p-values
    under names that say which test, the detectable effect and the verdict."""
    out = table.drop(columns=[c for c in HIDDEN if c in table.columns])
    return out.rename(columns={"p_bh": "p_paper_test_bh", "p_seed_bh": "p_seed_aware_bh",
                               "detectable": "detectable_80pct"})
