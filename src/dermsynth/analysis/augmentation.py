"""Report sections: synthetic data vs augmentation, and filtered vs unfiltered synthetic data.

Why: the first question a reviewer asks of a synthetic-data gain is whether strong
augmentation would have done as well, the second whether a filtered synthetic set does
better. Both are answered with the report's own comparison (``synthetic_comparisons``: the
same tests, seed-aware verdicts and BH within each table as every other comparison), by
presenting each question's reference arm to it as the "real-only" cell it matches:

- with vs without synthetic data at each augmentation arm (the table as it is);
- synthetic data with the default (paper's) transforms vs each augmentation arm alone
  (the real-only cell of that arm is the reference); the strongest arm alone is marked;
- each filter vs the unfiltered synthetic arm equal in everything else (the unfiltered arm
  is the reference).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dermsynth import files as dio
from dermsynth.analysis.figures import OKABE_ITO, save_figure
from dermsynth.analysis.report_sections import Section, fmt_table, img_tag
from dermsynth.analysis.summary import add_method_column, synthetic_comparisons
from dermsynth.stats import wald_ci
from dermsynth.train.synthetic_views import views_dir
from dermsynth.train.transforms import AUGMENTATIONS

DEFAULT_AUGMENT = "paper"


def arms(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every run's augmentation arm and filter spelt out (older records: from
    ``transforms``; no filter)."""
    t = table.copy()
    aug = t["augment"] if "augment" in t else pd.Series(None, index=t.index, dtype=object)
    t["augment"] = [a if isinstance(a, str) else ("paper" if bool(tr) else "none")
                    for a, tr in zip(aug, t["transforms"], strict=True)]
    t["synthetic_filter"] = (t["synthetic_filter"].fillna("none") if "synthetic_filter" in t else "none")
    t["filter_keep"] = t.get("filter_keep", np.nan)
    if "repeat_real" in t:
        t = t[t["repeat_real"].fillna(1) == 1]  # steps-matched controls have their own table
    return t


def is_augmentation_study(table: pd.DataFrame) -> bool:
    """More augmentation arms than the paper's two, or a filter: these sections have something to say."""
    t = arms(table)
    return bool(set(t["augment"]) - {"none", "paper"}) or bool((t["synthetic_filter"] != "none").any())


def by_augmentation(table: pd.DataFrame, records: list[dict], test: str = "prop", correct: bool = True,
                    main: pd.DataFrame | None = None) -> pd.DataFrame:
    """With vs without (unfiltered) synthetic data, at each augmentation arm.

    ``main``: the report's with-vs-without table, which already holds these comparisons. They
    are taken from it — with its family's adjusted p-values and verdicts — rather than adjusted
    again within a smaller family, so that one comparison has one verdict in the whole report.
    """
    if main is None:
        t = arms(table)
        t = t[t["synthetic_filter"] == "none"]
        return synthetic_comparisons(t.drop(columns=["filter_keep"]), records, test, correct)
    rows = main
    if "synthetic_filter" in rows:
        rows = rows[rows["synthetic_filter"].fillna("none") == "none"]
    rows = rows.drop(columns=[c for c in ("synthetic_filter", "filter_keep") if c in rows]).reset_index(drop=True)
    if "augment" not in rows:  # the arm is spelt by transforms alone, or does not vary
        if "transforms" in rows:
            augment = ["paper" if str(v) in ("True", "true", "1") else "none" for v in rows["transforms"]]
        else:
            augment = [arms(table)["augment"].iloc[0]] * len(rows)
        rows.insert(0, "augment", augment)
    return rows


def vs_augmentation_alone(table: pd.DataFrame, records: list[dict], test: str = "prop", correct: bool = True,
                          default: str = DEFAULT_AUGMENT) -> pd.DataFrame:
    """Synthetic data with the default transforms vs each other augmentation arm with real data alone."""
    t = arms(table)
    t = t[t["synthetic_filter"] == "none"]
    syn = t[(t["synthetic_per_real"] > 0) & (t["augment"] == default)]
    alone = [a for a in AUGMENTATIONS if a not in ("none", default) and
             ((t["synthetic_per_real"] == 0) & (t["augment"] == a)).any()]
    if syn.empty or not alone:
        return pd.DataFrame()
    parts = []
    for a in alone:  # the default arm, presented as if it had been trained with ``a``
        ref = t[(t["synthetic_per_real"] == 0) & (t["augment"] == a)]
        parts += [syn.assign(augment=a, transforms=ref["transforms"].iloc[0]), ref]
    comp = synthetic_comparisons(pd.concat(parts, ignore_index=True).drop(columns=["filter_keep"]), records, test,
                                 correct, family=f"synthetic data with the {default} transforms vs each augmentation "
                                                 "alone")
    if comp.empty:
        return comp
    comp = comp.rename(columns={"augment": "augmentation_alone", "acc_synthetic": "acc_synthetic_default",
                                "acc_real_only": "acc_augmentation_alone"})
    comp.insert(0, "synthetic_with", default)
    keys = [c for c in ("n_real", "method", "synthetic_per_real", "generator_finetune") if c in comp]
    best = comp.groupby(keys, dropna=False)["acc_augmentation_alone"].transform("max") if keys else \
        comp["acc_augmentation_alone"].max()
    comp["strongest_alone"] = comp["acc_augmentation_alone"] == best
    return comp.drop(columns=[c for c in ("transforms",) if c in comp])


def _tag(*parts) -> str:
    return json.dumps([None if pd.isna(p) else (p.item() if hasattr(p, "item") else p) for p in parts])


def filter_comparisons(table: pd.DataFrame, records: list[dict], test: str = "prop", correct: bool = True
                       ) -> pd.DataFrame:
    """Each filtered synthetic arm vs the unfiltered arm equal in every other field."""
    t = add_method_column(arms(table))
    syn = t[t["synthetic_per_real"] > 0]
    filt, unf = syn[syn["synthetic_filter"] != "none"], syn[syn["synthetic_filter"] == "none"]
    if filt.empty or unf.empty:
        return pd.DataFrame()

    def arm_of(r: pd.Series) -> tuple:
        return r["method"], r["synthetic_per_real"], r.get("generator_finetune")

    parts = []
    for (name, keep), rows in filt.groupby(["synthetic_filter", "filter_keep"], dropna=False):
        # the filter, its share and the arm's method, k and generator in one matching field, so
        # each filtered arm meets only the unfiltered arm of its own method, k and generator
        tags = [_tag(name, keep, *arm_of(r)) for _, r in rows.iterrows()]
        parts.append(rows.assign(synthetic_filter=tags))
        ref = unf.assign(synthetic_filter=[_tag(name, keep, *arm_of(r)) for _, r in unf.iterrows()],
                         synthetic_per_real=0, filter_keep=keep)
        parts.append(ref[ref["synthetic_filter"].isin(set(tags))])
    both = pd.concat(parts, ignore_index=True).drop(columns=["method"])
    comp = synthetic_comparisons(both, records, test, correct, family="filtered vs unfiltered synthetic data")
    if comp.empty:
        return comp
    decoded = [json.loads(v) for v in comp["synthetic_filter"]]
    comp["synthetic_filter"] = [d[0] for d in decoded]
    comp["filter_keep"] = [d[1] for d in decoded]
    comp = comp.rename(columns={"acc_synthetic": "acc_filtered", "acc_real_only": "acc_unfiltered"})
    front = ["synthetic_filter", "filter_keep"]
    return comp[front + [c for c in comp.columns if c not in front]]


def kept_table(stores) -> pd.DataFrame:
    """Images each filter kept, per store, class and method (from the views' records)."""
    rows = []
    for store in stores:
        for path in sorted(views_dir(store).glob("*-keep*.json")) if views_dir(store).exists() else []:
            view = dio.read_json(path)
            rows += [{"store": Path(store).name, "filter": view["filter"], "filter_keep": view["keep"], **c}
                     for c in view["counts"]]
    return pd.DataFrame(rows)


def _clause(row: pd.Series) -> str:
    try:
        from dermsynth.analysis.verdicts import verdict_clause

        return verdict_clause(row)
    except (ImportError, KeyError):
        return f"{100 * row['difference']:+.1f} points (BH p = {row['p_bh']:.2g})"


def _cell(row: pd.Series) -> str:
    return f"{int(row['n_real'])} real per class" if "n_real" in row and not pd.isna(row["n_real"]) else "this setting"


def _display(comp: pd.DataFrame) -> pd.DataFrame:
    try:
        from dermsynth.analysis.verdicts import display_view

        return display_view(comp)
    except ImportError:
        return comp


def _bars(panels: dict, order: list[str], series: dict[str, str], title: str, out: Path, name: str) -> Path:
    """Mean accuracy ± 95 % CI per arm (x) and series (bars), one panel per n_real."""
    fig = Figure(figsize=(max(4.5, 1.1 * len(order)) * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    width = 0.8 / max(len(series), 1)
    for ax, (label, cells) in zip(axes, panels.items(), strict=True):
        for i, (key, legend) in enumerate(series.items()):
            xs, ys, err = [], [], []
            for j, arm in enumerate(order):
                hit = cells.get((arm, key))
                if hit is None:
                    continue
                acc, n = hit
                lo, hi = wald_ci(acc, n)
                xs.append(j + (i - (len(series) - 1) / 2) * width)
                ys.append(100 * acc)
                err.append([100 * (acc - lo), 100 * (hi - acc)])
            if xs:
                ax.bar(xs, ys, width, yerr=np.array(err).T, capsize=2, color=OKABE_ITO[(i + 1) % 8], label=legend)
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, out, name)


def _panels(t: pd.DataFrame, arm_col: str, series_of) -> dict:
    panels: dict = {}
    for n, part in (t.groupby("n_real") if "n_real" in t else [("all", t)]):
        cells = {}
        for (arm, key), rows in part.assign(_s=[series_of(r) for _, r in part.iterrows()]).groupby([arm_col, "_s"]):
            cells[(arm, key)] = (float(rows["accuracy"].mean()), int(rows["n_test"].iloc[0]))
        panels[f"{n} real per class" if n != "all" else "all runs"] = cells
    return panels


def augmentation_figure(table: pd.DataFrame, out: Path) -> Path | None:
    t = arms(table)
    t = t[t["synthetic_filter"] == "none"]
    order = [a for a in AUGMENTATIONS if a in set(t["augment"])]
    if len(order) < 2:
        return None
    panels = _panels(t, "augment", lambda r: "synthetic" if r["synthetic_per_real"] > 0 else "real")
    return _bars(panels, order, {"real": "real only", "synthetic": "+ synthetic"},
                 "Synthetic data vs augmentation", out, "augmentation_vs_synthetic")


def filter_figure(table: pd.DataFrame, out: Path) -> Path | None:
    t = arms(table)
    filtered = t[t["synthetic_filter"] != "none"]
    if filtered.empty:
        return None
    t = t[t["augment"].isin(set(filtered["augment"]))]

    def arm(r):
        if r["synthetic_per_real"] == 0:
            return "real only"
        return "unfiltered" if r["synthetic_filter"] == "none" else f"{r['synthetic_filter']} {r['filter_keep']:g}"

    t = t.assign(arm=[arm(r) for _, r in t.iterrows()])
    order = ["real only", "unfiltered", *sorted(set(t["arm"]) - {"real only", "unfiltered"})]
    return _bars(_panels(t, "arm", lambda r: "all"), order, {"all": "mean over seeds"},
                 "Filtered vs unfiltered synthetic data", out, "filtered_vs_unfiltered")


def augmentation_sections(out_dir: str | Path, table: pd.DataFrame, records: list[dict], test: str = "prop",
                          correct: bool = True, main: pd.DataFrame | None = None) -> list[Section]:
    """The two sections (empty when the study has neither strong augmentation nor filters).
    ``main``: the report's with-vs-without table (see :func:`by_augmentation`)."""
    if not is_augmentation_study(table):
        return []
    out_dir = Path(out_dir)
    sections = []
    by_aug = by_augmentation(table, records, test, correct, main)
    alone = vs_augmentation_alone(table, records, test, correct)
    if len(by_aug) or len(alone):
        by_aug.to_csv(out_dir / "augmentation_comparisons.csv", index=False)
        alone.to_csv(out_dir / "synthetic_vs_augmentation_alone.csv", index=False)
        lines = [f"With vs without synthetic data, {r['augment']}, {_cell(r)}: {100 * r['acc_real_only']:.1f} % → "
                 f"{100 * r['acc_synthetic']:.1f} %, {_clause(r)}." for _, r in by_aug.iterrows()]
        lines += [f"Synthetic data with the {r['synthetic_with']} transforms vs {r['augmentation_alone']} alone"
                  f"{' (the strongest alone)' if r['strongest_alone'] else ''}, {_cell(r)}: "
                  f"{100 * r['acc_augmentation_alone']:.1f} % → {100 * r['acc_synthetic_default']:.1f} %, "
                  f"{_clause(r)}." for _, r in alone.iterrows()]
        fig = augmentation_figure(table, out_dir / "figures")
        body = ("<ul>" + "".join(f"<li>{_escape(x)}</li>" for x in lines) + "</ul>"
                + (img_tag(fig) if fig else "")
                + "<h3>With vs without synthetic data at each augmentation arm</h3>" + fmt_table(_display(by_aug))
                + ("<h3>Synthetic data with the default transforms vs each augmentation alone</h3>"
                   + fmt_table(_display(alone)) if len(alone) else ""))
        sections.append(Section("Synthetic data vs augmentation", body,
                                "Augmentation arms: none, the paper's transforms, and those plus RandAugment, "
                                "TrivialAugmentWide, AugMix, MixUp or CutMix (torchvision, standard magnitudes; "
                                "each run's record lists them). The first table's rows are those of the report's "
                                "with-vs-without table, with that family's BH-adjusted p-values and verdicts; the "
                                "second is a family of its own."))
    filt = filter_comparisons(table, records, test, correct)
    stores = sorted({r["spec"].get("synthetic_store") for r in records
                     if r["spec"].get("synthetic_filter", "none") != "none"})
    kept = kept_table([s for s in stores if s])
    if len(filt) or len(kept):
        filt.to_csv(out_dir / "filter_comparisons.csv", index=False)
        kept.to_csv(out_dir / "filter_kept.csv", index=False)
        lines = [f"{r['synthetic_filter']} (keep {r['filter_keep']:g}) vs unfiltered, {r['method']}, "
                 f"{_cell(r)}: {100 * r['acc_unfiltered']:.1f} % → {100 * r['acc_filtered']:.1f} %, "
                 f"{_clause(r)}." for _, r in filt.iterrows()]
        fig = filter_figure(table, out_dir / "figures")
        body = ("<ul>" + "".join(f"<li>{_escape(x)}</li>" for x in lines) + "</ul>" + (img_tag(fig) if fig else "")
                + ("<h3>Filtered vs unfiltered</h3>" + fmt_table(_display(filt)) if len(filt) else "")
                + ("<h3>Images kept per class and method</h3>" + fmt_table(kept) if len(kept) else ""))
        sections.append(Section("Filtered vs unfiltered synthetic data", body,
                                "Each filter keeps the top share of every reference's images by a classifier "
                                "trained on real training images only (confidence in the intended class, feature "
                                "similarity to the class's real images, or distance from every real training "
                                "image); the unfiltered arm draws the same number at random. BH within the table."))
    return sections


def _escape(text: str) -> str:
    import html

    return html.escape(text)
