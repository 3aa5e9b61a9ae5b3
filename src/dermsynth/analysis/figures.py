"""The paper's figures, drawn from the results table alone (PNG + SVG, colour-blind safe)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dermsynth.analysis.summary import add_method_column, distinct_values
from dermsynth.stats import wald_ci

OKABE_ITO = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"]


def save_figure(fig, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=150, bbox_inches="tight")
    fig.savefig(out / f"{name}.svg", bbox_inches="tight")
    return out / f"{name}.png"


def _stars(p):
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def _deciding_p(rows) -> pd.Series:
    """The p-values that decide stars: the seed-aware test's (BH), as in the summary; untestable → none."""
    if "p_seed_bh" in rows:
        return rows["p_seed_bh"].astype(float).fillna(1.0)
    return rows["p_bh"]


def _generator_variants(t: pd.DataFrame) -> list:
    """The generator variants of the synthetic arms ([None] when the study has one generator)."""
    if "generator_finetune" not in t:
        return [None]
    values = sorted({v for v in t.loc[t["synthetic_per_real"] > 0, "generator_finetune"] if isinstance(v, str)})
    return values if len(values) > 1 else [None]


def _log_n_real_axis(ax, values) -> None:
    """A log-like x axis labelled with the n_real values that were tested (not '10^0')."""
    ax.set_xscale("symlog", linthresh=1)
    ticks = sorted({int(v) for v in values})
    ax.set_xticks(ticks, [str(v) for v in ticks])
    ax.minorticks_off()


Interval = Callable[[Iterable[str]], tuple[float, float]]


def _error_bars(g: pd.DataFrame, interval: Interval | None) -> np.ndarray:
    """Error-bar lengths (below and above each point): the cell CI over seeds and test images from
    ``interval`` (run ids → bounds; none where it is unknown), else the paper's Wald CI (n = test
    images)."""
    if interval is None:
        ci = np.array([wald_ci(p, n) for p, n in zip(g["acc"], g["n"], strict=True)])
    else:
        ci = np.array([interval(ids) for ids in g["run_ids"]], dtype=float)
        ci = np.where(np.isfinite(ci), ci, g["acc"].to_numpy()[:, None])
    return np.abs(ci.T - g["acc"].to_numpy())


def _ci_words(interval: Interval | None) -> str:
    return ("bars: 95 % CI over seeds and test images" if interval is not None
            else "bars: Wald 95 % CI, n = test images")


def fig_accuracy_vs_nreal(table: pd.DataFrame, comparisons: pd.DataFrame | None, out: Path,
                          interval: Interval | None = None) -> Path | None:
    """Fig. 3 drawn by :func:`draw_fig3` and saved (PNG + SVG)."""
    fig = draw_fig3(table, comparisons, interval)
    return None if fig is None else save_figure(fig, out, "fig3_accuracy_vs_nreal")


def draw_fig3(table: pd.DataFrame, comparisons: pd.DataFrame | None, interval: Interval | None = None
              ) -> Figure | None:
    """Fig. 3: accuracy vs real images per class, with / without synthetic data and transforms.

    One row of panels per generator variant (pretrained vs fine-tuned are different questions,
    each with its own BH family, as in the paper); the real-only baseline is drawn in every row."""
    t = add_method_column(table)
    if t["n_real"].nunique() < 1:
        return None
    methods = [m for m in sorted(t["method"].unique()) if m != "none"] or ["none"]
    variants = _generator_variants(t)
    fig = Figure(figsize=(4.2 * len(methods), 3.6 * len(variants)))
    axes = fig.subplots(len(variants), len(methods), sharey=True, squeeze=False)
    for row_axes, variant in zip(axes, variants, strict=True):
        rows_v = t if variant is None else t[(t["synthetic_per_real"] == 0) | (t["generator_finetune"] == variant)]
        comps_v = comparisons
        if variant is not None and comparisons is not None and "generator_finetune" in comparisons:
            comps_v = comparisons[comparisons["generator_finetune"] == variant]
        for ax, method in zip(row_axes, methods, strict=True):
            _fig3_panel(ax, rows_v, comps_v, method, interval)
            _log_n_real_axis(ax, t["n_real"])
            ax.set_title(method if variant is None else f"{method} — {GENERATOR_LABELS.get(variant, variant)}",
                         fontsize=9)
        row_axes[0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Accuracy vs real data, with and without synthetic data (* seed-aware test, BH-adjusted p; "
                 f"{_ci_words(interval)})", fontsize=10)
    return fig


GENERATOR_LABELS = {"none": "pretrained generator", "all": "fine-tuned generator", "per-class": "fine-tuned per class"}


def _fig3_panel(ax, t: pd.DataFrame, comparisons: pd.DataFrame | None, method: str,
                interval: Interval | None = None) -> None:
    for ti, tr in enumerate(sorted(t["transforms"].unique())):
        arm = "steps-matched control" if method.startswith("real ×") else f"+ synthetic ({method})"
        for si, (label, rows) in enumerate((("real only", t[t["method"] == "none"]),
                                            (arm, t[t["method"] == method]))):
            rows = rows[rows["transforms"] == tr]
            if not len(rows) or (label != "real only" and method == "none"):
                continue
            for k, krows in rows.groupby("synthetic_per_real"):
                g = krows.groupby("n_real").agg(acc=("accuracy", "mean"), n=("n_test", "first"),
                                                run_ids=("run_id", list)).reset_index()
                name = f"{label}{f' ×{k}' if k else ''}, transforms {'on' if tr else 'off'}"
                ax.errorbar(g["n_real"], 100 * g["acc"], yerr=100 * _error_bars(g, interval),
                            marker="o" if si else "s", capsize=3, color=OKABE_ITO[6] if si else OKABE_ITO[0],
                            linestyle="-" if ti else "--", label=name)
                if comparisons is None or not len(comparisons) or not k:
                    continue
                c = comparisons[(comparisons["method"] == method) & (comparisons["synthetic_per_real"] == k)]
                if "transforms" in c:
                    c = c[c["transforms"].astype(str) == str(tr)]
                for (_, r), p in zip(c.iterrows(), _deciding_p(c), strict=True):
                    n_real = r["n_real"] if "n_real" in r else g["n_real"].iloc[0]  # constant n_real: no column
                    y = 100 * g.loc[g["n_real"] == n_real, "acc"]
                    if _stars(p) and len(y):
                        ax.annotate(_stars(p), (n_real, float(y.iloc[0]) + 2), ha="center", fontsize=11)
    ax.set_xlabel("real images per class")
    ax.grid(alpha=0.3)


def fig_dose_response(table: pd.DataFrame, out: Path, fits: dict | None = None, interval: Interval | None = None
                      ) -> Path | None:
    """Fig. 4: accuracy vs synthetic-per-real ratio, one panel per n_real."""
    t = table
    if t["synthetic_per_real"].nunique() < 3:
        return None
    nreals = sorted(t["n_real"].unique())
    fig = Figure(figsize=(4 * len(nreals), 3.4))
    axes = fig.subplots(1, len(nreals), sharey=True, squeeze=False)
    for ax, n in zip(axes[0], nreals, strict=True):
        for ti, tr in enumerate(sorted(t["transforms"].unique())):
            rows = t[(t["n_real"] == n) & (t["transforms"] == tr)]
            g = rows.groupby("synthetic_per_real").agg(acc=("accuracy", "mean"), n=("n_test", "first"),
                                                       run_ids=("run_id", list)).reset_index()
            ax.errorbar(g["synthetic_per_real"], 100 * g["acc"], yerr=100 * _error_bars(g, interval),
                        marker="o", capsize=3, color=OKABE_ITO[5 + ti], label=f"transforms {'on' if tr else 'off'}")
            fit = (fits or {}).get((n, tr))
            if fit is not None and fit.converged:
                r = np.linspace(0, g["synthetic_per_real"].max(), 100)
                ax.plot(r, 100 * (fit.a + fit.b * (1 - np.exp(-r / fit.c))), color=OKABE_ITO[5 + ti], alpha=0.5)
        ax.set_title(f"{n} real per class")
        ax.set_xlabel("synthetic per real")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"Accuracy vs synthetic per real ({_ci_words(interval)})", fontsize=9)
    return save_figure(fig, out, "fig4_dose_response")


def fig_per_class_gain(table: pd.DataFrame, out: Path) -> Path | None:
    """Fig. S-1: per-class accuracy change with synthetic data, one row per method (and generator
    variant) and n_real — the paper's per-method, per-class claims, not an average over methods."""
    t = add_method_column(table)
    cls_cols = [c for c in t.columns if c.startswith("acc_class:")]
    if not cls_cols or (t["synthetic_per_real"] == 0).all():
        return None
    arm_keys = ["method"] + (["generator_finetune"] if _generator_variants(t) != [None] else [])
    base = t[(t["synthetic_per_real"] == 0) & (t["method"] == "none")].groupby("n_real")[cls_cols].mean()
    syn = t[t["synthetic_per_real"] > 0].groupby([*arm_keys, "n_real"])[cls_cols].mean()
    rows, labels = [], []
    for key, values in syn.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        n_real = key[-1]
        if n_real not in base.index:
            continue
        rows.append((values - base.loc[n_real]).to_numpy() * 100)
        arm = ", ".join(GENERATOR_LABELS.get(str(k), str(k)) for k in key[:-1])
        labels.append(f"{arm}, {n_real} real")
    if not rows:
        return None
    gain = np.vstack(rows)
    fig = Figure(figsize=(2.5 + 0.9 * len(cls_cols), 0.8 + 0.45 * len(rows)))
    ax = fig.subplots()
    lim = max(1.0, float(np.nanmax(np.abs(gain))))
    im = ax.imshow(gain, cmap="PuOr", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(cls_cols)), [c.split(":", 1)[1] for c in cls_cols], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for (i, j), v in np.ndenumerate(gain):
        ax.text(j, i, f"{v:+.0f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="accuracy change (points)")
    ax.set_title("Per-class gain from synthetic data, per method and n_real (mean over seeds and transforms)",
                 fontsize=9)
    return save_figure(fig, out, "figS1_per_class_gain")


def fig_skin_groups(table: pd.DataFrame, out: Path, group_comps: pd.DataFrame | None = None) -> Path | None:
    """Fig. 5: accuracy per skin-type group, with and without synthetic data, one panel per n_real
    (pooling n_real would average a 4-real and a 200-real classifier); 95 % Wald CIs with n = the
    group's test size; * marks a significant change from the real-only bar (seed-aware test, BH)."""
    t = add_method_column(table)
    cols = [c for c in t.columns if c.startswith("acc_group:")]
    if not cols:
        return None
    groups = [c.split(":", 1)[1] for c in cols]
    sizes = {g: int(group_comps.loc[group_comps["skin_group"] == g, "n_group"].iloc[0])
             for g in groups if group_comps is not None and len(group_comps) and
             (group_comps["skin_group"] == g).any()}
    nreals = sorted(t["n_real"].unique())
    fig = Figure(figsize=(6.5 * len(nreals), 3.6))
    axes = fig.subplots(1, len(nreals), sharey=True, squeeze=False)[0]
    for ax, n_real in zip(axes, nreals, strict=True):
        comps = group_comps
        if comps is not None and len(comps) and "n_real" in comps:
            comps = comps[comps["n_real"] == n_real]
        _skin_group_panel(ax, t[t["n_real"] == n_real], cols, groups, sizes, comps)
        ax.set_title(f"{n_real} real per class", fontsize=9)
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle("Accuracy by skin-type group (* seed-aware test, BH-adjusted p, n = group test size)", fontsize=9)
    return save_figure(fig, out, "fig5_skin_groups")


def _skin_group_panel(ax, t: pd.DataFrame, cols: list[str], groups: list[str], sizes: dict,
                      group_comps: pd.DataFrame | None) -> None:
    g = t.groupby(["method", "transforms"])[cols].mean()
    width = 0.8 / max(len(g), 1)
    for i, (key, row) in enumerate(g.iterrows()):
        x = np.arange(len(cols)) + i * width
        acc = row.to_numpy()
        err = [100 * (wald_ci(p, sizes[gr])[1] - p) if gr in sizes else 0 for p, gr in zip(acc, groups, strict=True)]
        ax.bar(x, 100 * acc, width, yerr=err, capsize=2, color=OKABE_ITO[(i + 1) % 8],
               label=f"{'real only' if key[0] == 'none' else key[0]}, transforms {'on' if key[1] else 'off'}")
        if group_comps is None or not len(group_comps) or key[0] == "none":
            continue
        for xi, gr, p in zip(x, groups, acc, strict=True):
            hit = group_comps[(group_comps["skin_group"] == gr) & (group_comps["method"] == key[0])]
            if "transforms" in hit:
                hit = hit[hit["transforms"].astype(str) == str(key[1])]
            star = _stars(float(_deciding_p(hit).min())) if len(hit) else ""
            if star:
                ax.annotate(star, (xi, 100 * p + 4), ha="center", fontsize=10)
    ax.set_xticks(np.arange(len(cols)) + 0.4 - width / 2, groups)
    ax.set_xlabel("Fitzpatrick skin-type group")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")


def fig_imbalance(table: pd.DataFrame, out: Path) -> Path | None:
    """Fig. S-2: rare-class and overall accuracy, synthetic vs duplication."""
    if "class_n_real" not in table.columns or distinct_values(table["class_n_real"]) < 2:
        return None
    import json

    t = table.copy()
    t["rare"] = [next(iter(json.loads(v).items()), (None, None)) if isinstance(v, str) else (None, None)
                 for v in t["class_n_real"]]
    t = t[[r[0] is not None for r in t["rare"]]]
    if t.empty:
        return None
    t["rare_n"] = [r[1] for r in t["rare"]]
    t["rare_acc"] = [row[f"acc_class:{r[0]}"] for r, (_, row) in zip(t["rare"], t.iterrows(), strict=True)]
    t["arm"] = np.where(t["synthetic_per_real"] > 0, "synthetic", np.where(
        t["duplicate_classes"].astype(str).str.len() > 2, "duplication", "none"))
    fig = Figure(figsize=(8, 3.2))
    axes = fig.subplots(1, 2, sharex=True)
    for i, (arm, rows) in enumerate(t.groupby("arm")):
        g = rows.groupby("rare_n")[["rare_acc", "accuracy"]].mean() * 100
        axes[0].plot(g.index, g["rare_acc"], marker="o", color=OKABE_ITO[i + 1], label=arm)
        axes[1].plot(g.index, g["accuracy"], marker="o", color=OKABE_ITO[i + 1], label=arm)
    axes[0].set_title("rare-class accuracy")
    axes[1].set_title("overall accuracy")
    for ax in axes:
        ax.set_xlabel("real images of the rare class")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[1].legend(fontsize=8)
    return save_figure(fig, out, "figS2_imbalance")
