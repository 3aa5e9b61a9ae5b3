"""One self-contained HTML report of a study: config, tables, figures, samples, summary.

The page is a jinja2 template (``templates/report.html.j2``); this module gathers the
numbers, tables and figures it shows. Figures are embedded as base64 PNGs so the report is
one file a user can mail to a co-author.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from dermsynth import files as dio
from dermsynth.analysis import figures
from dermsynth.analysis.aa_check import calibration_section
from dermsynth.analysis.augmentation import augmentation_sections
from dermsynth.analysis.data_notes import cleaning_sections, missing_image_warnings, provenance_sections
from dermsynth.analysis.dose import fit_dose_response
from dermsynth.analysis.external_report import external_sections
from dermsynth.analysis.fairness import fairness_section
from dermsynth.analysis.imbalance import imbalance_comparisons, imbalance_summary, is_imbalance_study
from dermsynth.analysis.reader_study import find_studies, reader_study_section
from dermsynth.analysis.remedies import gap_sections
from dermsynth.analysis.report_sections import (
    Section,
    analysis_sections,
    b64,
    cost_section,
    degenerate_warnings,
    fmt_table,
    generator_section,
    sample_grid,
)
from dermsynth.analysis.seed_variance import PAPER_TEST_NAME, TEST_NAME
from dermsynth.analysis.sequential import planned_seeds_only, report_view
from dermsynth.analysis.skin_groups import group_comparisons, group_summary
from dermsynth.analysis.summary import (
    add_method_column,
    arm_keys,
    cell_interval,
    cell_summary,
    plain_summary,
    synthetic_comparisons,
    varying_keys,
)
from dermsynth.analysis.verdicts import display_view
from dermsynth.data.synthetic_store import is_store
from dermsynth.errors import DataError
from dermsynth.experiments.current_runs import Currency, current_records
from dermsynth.experiments.results import load_records, results_table
from dermsynth.experiments.study_path import locate_store

_ENV = Environment(loader=PackageLoader("dermsynth.analysis", "templates"), autoescape=select_autoescape(["j2"]))


def _test_text(test: str, correct: bool) -> str:
    if test == "fisher":
        return "Fisher's exact tests"
    if correct:
        return "two-sample proportion tests (Yates-corrected, as R's prop.test)"
    return "two-sample proportion tests (uncorrected z-test)"


def currency_warnings(currency: Currency) -> list[str]:
    """Say which runs the report left out and why (they would have mixed two experiments)."""
    if currency.unchecked_reason:
        return [f"The runs could not be checked against the study's config and data as they are now "
                f"({currency.unchecked_reason}); the report uses every finished run in runs/."]
    if not currency.checked or not currency.left_out:
        return []
    reasons = "; ".join(f"{n} {why}" for why, n in currency.reasons().items())
    return [f"{len(currency.left_out)} finished run(s) in runs/ are not results of the study as it is now and were "
            f"left out: {reasons}. They are listed in left_out_runs.csv."]


def _fit_lines(fits: dict, tested: float) -> list[str]:
    """One sentence per dose fit; a saturation point beyond the tested ratios is not reported as one."""
    lines = []
    for cell, f in fits.items():
        where = ", ".join(f"{k}={v}" for k, v in cell)
        if not f.converged:
            lines.append(f"{where}: the saturating curve did not converge; no saturation point is claimed.")
        elif f.ratio90 > tested or f.ratio90_ci[1] > tested:
            lines.append(f"{where}: no saturation within the tested ratios (≤ {tested:g} synthetic per real): the "
                         f"fitted 90 %-of-gain point {f.ratio90:.1f} (95 % CI {f.ratio90_ci[0]:.1f}–"
                         f"{f.ratio90_ci[1]:.1f}) lies beyond or is not pinned by the data.")
        else:
            lines.append(f"{where}: 90 % of the fitted gain is reached at {f.ratio90:.1f} synthetic per real (95 % CI "
                         f"{f.ratio90_ci[0]:.1f}–{f.ratio90_ci[1]:.1f}); plateau {100 * f.plateau:.1f} %.")
    return lines


def build_report(out_dir: str | Path, report_path: str | Path | None = None, title: str | None = None,
                 extra_sections: list[tuple[str, str]] | None = None, ci: str = "wald", test: str = "prop",
                 correct: bool = True, reader_studies: list[str | Path] | None = None) -> Path:
    """Analyse ``OUT/runs`` and write the HTML report (figures also saved under OUT/figures).
    Reader studies under ``OUT/reader_studies/`` (and any in ``reader_studies``) get a section each."""
    out_dir = Path(out_dir)
    currency = current_records(out_dir, load_records(out_dir))
    records = currency.kept
    (out_dir / "left_out_runs.csv").unlink(missing_ok=True)  # an earlier report's list is no longer true
    if currency.left_out:
        pd.DataFrame(currency.left_out, columns=["run_id", "reason"]).to_csv(out_dir / "left_out_runs.csv",
                                                                             index=False)
    if not records:
        raise DataError(f"no finished run of the current config under {out_dir / 'runs'}"
                        + (f" ({len(currency.left_out)} stale ones left out: {currency.reasons()})"
                           if currency.left_out else "") + "; run the experiment first")
    every_run = results_table(out_dir, records)
    every_run.to_csv(out_dir / "results.csv", index=False)
    table = planned_seeds_only(out_dir, every_run)
    exp = dio.read_json(out_dir / "experiment.json") if (out_dir / "experiment.json").exists() else {}
    cells = cell_summary(table, ci, records)
    cells.to_csv(out_dir / "cells.csv", index=False)
    fig_dir = out_dir / "figures"
    imbalance = is_imbalance_study(table)
    if imbalance:  # Fig. S-2: its own arms and comparisons, no Fig. 3/4 views
        comps = imbalance_comparisons(table, records, test, correct)
        summary, fits = imbalance_summary(comps), {}
        figs = [figures.fig_imbalance(table, fig_dir)]
        comp_title = "Rare class and overall: synthetic vs imbalanced baseline and vs duplication"
        groups = pd.DataFrame()
    else:
        comps = synthetic_comparisons(table, records, test, correct, sequential=report_view(out_dir))
        summary, fits = plain_summary(comps), dose_fits(table)
        groups = group_comparisons(table, records, test, correct)
        summary += group_summary(groups)
        interval = cell_interval(records)
        figs = [figures.fig_accuracy_vs_nreal(table, comps, fig_dir, interval),
                figures.fig_dose_response(table, fig_dir, _figure_fits(fits), interval),
                figures.fig_per_class_gain(table, fig_dir), figures.fig_skin_groups(table, fig_dir, groups)]
        comp_title = "With vs without synthetic data"
    figs = [f for f in figs if f is not None]
    if len(comps):
        comps.to_csv(out_dir / "comparisons.csv", index=False)
    sections = [Section("Accuracy per cell", fmt_table(cells))]
    if len(comps):
        sections.append(Section(comp_title, fmt_table(display_view(comps)), COMPARISON_NOTE))
    control = synthetic_comparisons(table, records, test, correct, control=True) if not imbalance else pd.DataFrame()
    if len(control):
        control.to_csv(out_dir / "control_comparisons.csv", index=False)
        sections.append(Section("Synthetic data vs the steps-matched control", fmt_table(display_view(control)),
                                "Each arm with k synthetic per real against the same real images repeated k + 1 "
                                "times (as many optimisation steps per epoch, no new images); acc_real_only is the "
                                "control's accuracy. BH within this table. " + COMPARISON_NOTE))
    if not imbalance and len(groups):
        groups.to_csv(out_dir / "skin_group_comparisons.csv", index=False)
        sections.append(Section("By skin-type group (Fig. 5)", fmt_table(display_view(groups)),
                                "Accuracy within each group's test images (n = group size); BH over group × method "
                                "× transforms. " + COMPARISON_NOTE))
    sections.append(calibration_section(out_dir, table))
    fairness = fairness_section(out_dir, table, records)
    if fairness is not None:
        sections.append(fairness)
    sections += external_sections(out_dir, table)
    sections += augmentation_sections(out_dir, table, records, test, correct, main=None if imbalance else comps)
    gap_secs, gap_lines = gap_sections(out_dir, table, records, test, correct,
                                       exp.get("spec", {}).get("main_comparison"), every_run)
    sections += gap_secs
    summary += gap_lines
    sections += [reader_study_section(s) for s in find_studies(out_dir) + [Path(p) for p in reader_studies or []]]
    stores = sorted({str(locate_store(r["spec"]["synthetic_store"], out_dir)) for r in records
                     if r["spec"].get("synthetic_store")})  # where each store is now (the study may have moved)
    sections += [Section("Real and synthetic samples", sample_grid(s), f"store: {s}") for s in stores if is_store(s)]
    sections += cleaning_sections(out_dir)
    sections += provenance_sections(out_dir)
    sections += analysis_sections(out_dir)
    cost = cost_section(out_dir, table, comps if not imbalance else pd.DataFrame())
    if cost is not None:
        sections.append(cost)
    if exp.get("spec", {}).get("generator"):
        sections.insert(0, generator_section(exp["spec"]["generator"]))
    sections += [Section(head, body) for head, body in extra_sections or []]
    page = _ENV.get_template("report.html.j2").render(
        name=title or exp.get("name", out_dir.name), n_runs=len(records), generated=time.strftime("%Y-%m-%d %H:%M"),
        n_test=int(table["n_test"].iloc[0]), ci_name=ci.title(), test_text=_test_text(test, correct),
        seed_test_text=TEST_NAME,
        warnings=currency_warnings(currency) + missing_image_warnings(records) + degenerate_warnings(table),
        summary=summary, fit_lines=_fit_lines(fits, float(table["synthetic_per_real"].max())),
        figures=[b64(f) for f in figs],
        sections=sections, config=json.dumps(exp.get("spec", exp), indent=2) if exp else "")
    return dio.write_text(Path(report_path) if report_path else out_dir / "report.html", page)


COMPARISON_NOTE = (f"Verdicts come from the {TEST_NAME}: per-image correctness, paired by seed (a seed draws the same "
                   "real subset in both arms) and by test image; seed_ci_low–seed_ci_high is its 95 % CI, "
                   "p_seed_aware_bh its BH-adjusted p within the family the column family names, detectable_80pct "
                   "the effect this design detects with 80 % power. \"No difference\" needs the equivalence test "
                   "(two one-sided tests against ±5 points), BH-adjusted within the same family (p_equivalence_bh). "
                   "Each comparison has one family in the whole report, and every table that shows it shows that "
                   f"family's p and verdict. p_paper_test_bh is {PAPER_TEST_NAME}, BH-adjusted in the same "
                   "family; it ignores seed-to-seed variance. Bootstrap CIs (seeds and test images resampled, paired "
                   "seeds together) and raw p-values are in the CSV files.")


def dose_fits(table: pd.DataFrame) -> dict:
    """Dose-response fits, one per method (and generator variant) and per cell in which every
    other varying field is constant (the real-only runs of a cell serve as its ratio-0 point for
    every method and generator).

    Returns {((field, value), ...): DoseFit}; a cell needs ≥ 3 distinct ratios.
    """
    t = add_method_column(table)
    if t["synthetic_per_real"].nunique() < 3 or is_imbalance_study(table):
        return {}
    if "generator_finetune" not in t:
        t["generator_finetune"] = None
    keys = [k for k in varying_keys(t) if k not in {*arm_keys(), "synthetic_methods"}]  # the dose axes
    variants = sorted({v for v in t.loc[t["synthetic_per_real"] > 0, "generator_finetune"] if isinstance(v, str)})
    fits = {}
    for method in sorted(m for m in t["method"].unique() if m != "none"):
        for variant in variants or [None]:
            arm = (t["method"] == method) & ((t["generator_finetune"] == variant) if variant else True)
            rows = t[arm | (t["synthetic_per_real"] == 0)]
            for cell, part in (rows.groupby(keys, dropna=False) if keys else [((), rows)]):
                if part["synthetic_per_real"].nunique() < 3:
                    continue
                values = cell if isinstance(cell, tuple) else (cell,)
                key = (("method", method), *((("generator_finetune", variant),) if len(variants) > 1 else ()),
                       *((k, _plain(v)) for k, v in zip(keys, values, strict=True)))
                fits[key] = fit_dose_response(part["synthetic_per_real"].to_numpy(), part["accuracy"].to_numpy(),
                                              reps=200)
    return fits


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _figure_fits(fits: dict) -> dict:
    """The fits Fig. 4 can draw: keyed (n_real, transforms) when nothing else varies."""
    out = {}
    for cell, fit in fits.items():
        d = dict(cell)
        if set(d) <= {"method", "n_real", "transforms"}:
            out[(d.get("n_real"), d.get("transforms"))] = fit
    return out
