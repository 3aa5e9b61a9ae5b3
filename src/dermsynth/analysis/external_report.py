"""External validation in the report: internal vs external accuracy per cell, and whether
synthetic-data gains survive the distribution shift (the same comparisons and BH as the
internal ones, on the external images).

Reads what ``dermsynth classifier evaluate`` wrote under ``OUT/external/<name>/runs``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dermsynth.analysis.figures import OKABE_ITO, save_figure
from dermsynth.analysis.report_sections import Section, fmt_table, img_tag
from dermsynth.analysis.summary import add_method_column, correctness, synthetic_comparisons, varying_keys
from dermsynth.experiments.external_evaluation import external_folders_of
from dermsynth.experiments.results import load_records, results_table
from dermsynth.stats import bootstrap_accuracy, wald_ci


def internal_vs_external(internal: pd.DataFrame, external: pd.DataFrame, ext_records: list[dict],
                         reps: int = 1000) -> pd.DataFrame:
    """Per cell: internal accuracy (Wald CI, n = internal test size), external accuracy (CI from a
    bootstrap over seeds and external images), and the change."""
    corr = correctness(ext_records)
    t_int, t_ext = add_method_column(internal), add_method_column(external)
    keys = [k for k in varying_keys(t_int) if k != "synthetic_classes"] or ["method"]
    rows = []
    for cell, ext in t_ext.groupby(keys, dropna=False):
        cell = dict(zip(keys, cell if isinstance(cell, tuple) else (cell,), strict=True))
        inn = t_int[t_int["run_id"].isin(ext["run_id"])]
        p_int, n_int = float(inn["accuracy"].mean()), int(inn["n_test"].iloc[0])
        acc, lo, hi = bootstrap_accuracy(np.stack([corr[r] for r in ext["run_id"]]), reps=reps)
        i_lo, i_hi = wald_ci(p_int, n_int)
        rows.append({**cell, "acc_internal": p_int, "ci_internal_low": i_lo, "ci_internal_high": i_hi,
                     "acc_external": acc, "ci_external_low": lo, "ci_external_high": hi,
                     "difference": acc - p_int, "runs": len(ext), "n_internal": n_int,
                     "n_external": int(ext["n_test"].iloc[0])})
    return pd.DataFrame(rows)


def fig_internal_vs_external(frame: pd.DataFrame, out: Path, name: str) -> Path | None:
    """Each cell's internal and external accuracy joined by a line: do gains survive the shift?"""
    if frame.empty:
        return None
    label_cols = [c for c in frame.columns if c not in {
        "acc_internal", "ci_internal_low", "ci_internal_high", "acc_external", "ci_external_low",
        "ci_external_high", "difference", "runs", "n_internal", "n_external"}]
    labels = [", ".join(f"{k}={v}" for k, v in row.items()) for _, row in frame[label_cols].iterrows()]
    fig = Figure(figsize=(7, 0.35 * len(frame) + 1.5))
    ax = fig.subplots()
    y = np.arange(len(frame))
    ax.hlines(y, 100 * frame["acc_external"], 100 * frame["acc_internal"], color="#999999", lw=1)
    for col, lo, hi, color, lab in (("acc_internal", "ci_internal_low", "ci_internal_high", OKABE_ITO[5], "internal"),
                                    ("acc_external", "ci_external_low", "ci_external_high", OKABE_ITO[6], "external")):
        ax.errorbar(100 * frame[col], y, xerr=[100 * (frame[col] - frame[lo]), 100 * (frame[hi] - frame[col])],
                    fmt="o", color=color, capsize=2, label=lab)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("accuracy (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(f"Internal vs external ({name}) accuracy per cell, 95 % CIs", fontsize=9)
    return save_figure(fig, out, f"external_{name}")


def external_sections(out_dir: Path, internal: pd.DataFrame) -> list[Section]:
    """One section per external data set evaluated: the table, the figure, the comparisons."""
    sections = []
    for folder in external_folders_of(out_dir):
        records = load_records(folder)
        if not records:
            continue
        ext_table = results_table(folder, records)
        frame = internal_vs_external(internal, ext_table, records)
        frame.to_csv(folder / "internal_vs_external.csv", index=False)
        fig = fig_internal_vs_external(frame, Path(out_dir) / "figures", folder.name)
        comps = synthetic_comparisons(ext_table, records)
        about = records[0]["external"]
        excluded = ", ".join(f"{k} ({v})" for k, v in about.get("excluded_labels", {}).items()) or "none"
        body = fmt_table(frame) + (img_tag(fig) if fig else "")
        if len(comps):
            comps.to_csv(folder / "comparisons.csv", index=False)
            body += "<h3>With vs without synthetic data, on the external images</h3>" + fmt_table(comps)
        sections.append(Section(
            f"External validation: {folder.name}", body,
            f"{about['n']} images of {about['dataset']} ({about['root']}); labels left out: {excluded}; unreadable "
            f"files: {about.get('unreadable', 0)}. Internal CIs: Wald, n = internal test size; external CIs: "
            "bootstrap over seeds and images. Comparisons: same tests as internally, BH within the table."))
    return sections
