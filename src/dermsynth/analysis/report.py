"""One self-contained HTML report of a study: config, tables, figures, samples, summary.

The page is a jinja2 template (``templates/report.html.j2``); this module gathers the
numbers, tables and figures it shows. Figures are embedded as base64 PNGs so the report is
one file a user can mail to a co-author.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image

from dermsynth import io as dio
from dermsynth.analysis import figures
from dermsynth.analysis.dose import fit_dose_response
from dermsynth.analysis.imbalance import imbalance_comparisons, imbalance_summary, is_imbalance_study
from dermsynth.analysis.skin_groups import group_comparisons, group_summary
from dermsynth.analysis.summary import (
    add_method_column,
    cell_summary,
    plain_summary,
    synthetic_comparisons,
    varying_keys,
)
from dermsynth.data.synthetic_store import is_store, read_manifest, read_references
from dermsynth.errors import DataError
from dermsynth.experiments.results import load_records, results_table

_ENV = Environment(loader=PackageLoader("dermsynth.analysis", "templates"), autoescape=select_autoescape(["j2"]))


@dataclass
class Section:
    """One titled part of the report: an escaped sentence and an HTML fragment we built."""

    title: str
    html: str
    text: str = ""


def _b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def _img_tag(path: Path) -> str:
    return f'<img class="fig" src="data:image/png;base64,{_b64(path)}">'


def _thumb(path: str, size: int = 72) -> str:
    img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _fmt_table(df: pd.DataFrame) -> str:
    df = df.copy()
    for c in df.columns:
        if c.startswith(("acc", "ci_", "difference", "diff_", "balanced", "chance")):
            df[c] = (100 * df[c]).map(lambda v: f"{v:.1f}")
        elif c.startswith("p_"):
            df[c] = df[c].map(lambda v: f"{v:.2g}")
        elif c == "sd":
            df[c] = (100 * df[c]).map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    return df.to_html(index=False, escape=True, border=0)


def sample_grid(store: str | Path, per_class: int = 3) -> str:
    """Real references and their synthetic images side by side, per class and method."""
    man = read_manifest(store)
    if not len(man):
        return "<p>No synthetic images.</p>"
    ref_paths = dict(read_references(store)[["id", "path"]].itertuples(index=False))
    methods = sorted(man["method"].unique())
    rows = ["<table class='samples'><tr><th>class</th><th>real reference</th>" +
            "".join(f"<th>{html.escape(m)}</th>" for m in methods) + "</tr>"]
    for label, g in man.groupby("label"):
        for ref in sorted(g["ref_id"].unique())[:per_class]:
            cells = [f"<td>{html.escape(label)}</td>",
                     f"<td>{_thumb(ref_paths[ref]) if ref in ref_paths else ''}</td>"]
            for m in methods:
                hit = g[(g["ref_id"] == ref) & (g["method"] == m)]
                cells.append(f"<td>{_thumb(hit['path'].iloc[0]) if len(hit) else ''}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(rows) + "</table>"


def _test_text(test: str, correct: bool) -> str:
    if test == "fisher":
        return "Fisher's exact tests"
    if correct:
        return "two-sample proportion tests (Yates-corrected, as R's prop.test)"
    return "two-sample proportion tests (uncorrected z-test)"


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
                 correct: bool = True) -> Path:
    """Analyse ``OUT/runs`` and write the HTML report (figures also saved under OUT/figures)."""
    out_dir = Path(out_dir)
    records = load_records(out_dir)
    if not records:
        raise DataError(f"no finished runs under {out_dir / 'runs'}; run the experiment first")
    table = results_table(out_dir)
    table.to_csv(out_dir / "results.csv", index=False)
    exp = dio.read_json(out_dir / "experiment.json") if (out_dir / "experiment.json").exists() else {}
    cells = cell_summary(table, ci)
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
        comps = synthetic_comparisons(table, records, test, correct)
        summary, fits = plain_summary(comps), dose_fits(table)
        groups = group_comparisons(table, records, test, correct)
        summary += group_summary(groups)
        figs = [figures.fig_accuracy_vs_nreal(table, comps, fig_dir),
                figures.fig_dose_response(table, fig_dir, _figure_fits(fits)),
                figures.fig_per_class_gain(table, fig_dir), figures.fig_skin_groups(table, fig_dir, groups)]
        comp_title = "With vs without synthetic data"
    figs = [f for f in figs if f is not None]
    if len(comps):
        comps.to_csv(out_dir / "comparisons.csv", index=False)
    sections = [Section("Accuracy per cell", _fmt_table(cells))]
    if len(comps):
        sections.append(Section(comp_title, _fmt_table(comps)))
    control = synthetic_comparisons(table, records, test, correct, control=True) if not imbalance else pd.DataFrame()
    if len(control):
        control.to_csv(out_dir / "control_comparisons.csv", index=False)
        sections.append(Section("Synthetic data vs the steps-matched control", _fmt_table(control),
                                "Each arm with k synthetic per real against the same real images repeated k + 1 "
                                "times (as many optimisation steps per epoch, no new images); acc_real_only is the "
                                "control's accuracy. BH within this table."))
    if not imbalance and len(groups):
        groups.to_csv(out_dir / "skin_group_comparisons.csv", index=False)
        sections.append(Section("By skin-type group (Fig. 5)", _fmt_table(groups),
                                "Accuracy within each group's test images (n = group size), paired bootstrap CI, "
                                "BH over group × method × transforms."))
    stores = sorted({r["spec"].get("synthetic_store") for r in records if r["spec"].get("synthetic_store")})
    sections += [Section("Real and synthetic samples", sample_grid(s), f"store: {s}") for s in stores if is_store(s)]
    sections += analysis_sections(out_dir)
    if exp.get("spec", {}).get("generator"):
        sections.insert(0, generator_section(exp["spec"]["generator"]))
    sections += [Section(head, body) for head, body in extra_sections or []]
    page = _ENV.get_template("report.html.j2").render(
        name=title or exp.get("name", out_dir.name), n_runs=len(records), generated=time.strftime("%Y-%m-%d %H:%M"),
        n_test=int(table["n_test"].iloc[0]), ci_name=ci.title(), test_text=_test_text(test, correct),
        warnings=degenerate_warnings(table),
        summary=summary, fit_lines=_fit_lines(fits, float(table["synthetic_per_real"].max())),
        figures=[_b64(f) for f in figs],
        sections=sections, config=json.dumps(exp.get("spec", exp), indent=2) if exp else "")
    return dio.write_text(Path(report_path) if report_path else out_dir / "report.html", page)


def analysis_sections(out_dir: Path) -> list[Section]:
    """Fig. 2, quality and memorization results written under OUT/analysis by `dermsynth embed` & co."""
    base = out_dir / "analysis"
    parts = []
    emb = base / "embedding" / "embedding.json"
    if emb.exists():
        res = dio.read_json(emb)
        rows = "".join(f"<tr><td>{k}</td><td>{v:.4f}</td><td>{res['paper_means'].get(k, '')}</td></tr>"
                       for k, v in res["means"].items())
        pngs = [Path(p) for p in res["figures"].values() if str(p).endswith(".png")]
        figs = "".join(_img_tag(p) for p in pngs if p.exists())
        parts.append(Section(f"Embedding analysis (Fig. 2, {res['encoder']})",
                             "<table><tr><th>pairs</th><th>mean cosine distance</th><th>paper</th></tr>"
                             f"{rows}</table>" + _fmt_table(pd.DataFrame(res["tests"])) + figs))
    r = base / "recognisability" / "recognisability.json"
    if r.exists():
        info = dio.read_json(r)
        rows = pd.DataFrame(info["rows"])
        parts.append(Section(
            "Do synthetic images show their class?", _fmt_table(rows),
            f"A {info['backbone']} at {info['image_size']} px trained on the {info['n_train_real']} real "
            "training-pool images only, scored on real test images and on each method's synthetic images (Wilson "
            "95 % CI; one-sided exact binomial test against chance). Masked methods keep part of a training image "
            "this classifier saw, so their rows are upper bounds; text-to-image has no such link."))
    q = base / "quality" / "quality.csv"
    if q.exists():
        parts.append(Section("Synthetic-data quality", pd.read_csv(q).to_html(index=False, float_format="%.4g")))
    m = base / "memorization" / "memorization.json"
    if m.exists():
        info = dio.read_json(m)
        parts.append(Section("Memorization audit", "", f"{info['flagged']} of {info['n_synthetic']} synthetic "
                             f"images flagged as near-copies of a real image (thresholds {info['thresholds']})."))
    return parts


def generator_section(gen: dict) -> Section:
    """Which generator made the synthetic images and what real images it learnt from."""
    names = {"none": "pretrained" if gen["backend"] == "sd" else "base model (no fine-tuning)",
             "all": "fine-tuned on all classes", "per-class": "fine-tuned per class"}
    values = gen["finetune"] if isinstance(gen["finetune"], list) else [gen["finetune"]]
    model = gen.get("model") or ("built-in, trained in this study" if gen["backend"] == "builtin" else "?")
    if gen.get("finetune_on", "pool") == "subset":
        source = ("each run's own real subset (finetune_on = \"subset\"): no synthetic image carries information "
                  "from a real image its classifier was not given")
    else:
        source = ("the whole training pool, while each classifier sees only its n_real per class: synthetic images "
                  "can carry information from pool images that run's classifier was not given (set "
                  "finetune_on = \"subset\" to rule this out)")
    trained = "learnt from" if gen["backend"] == "builtin" or values != ["none"] else "was not trained on this data"
    text = (f"Backend {gen['backend']} ({model}); variants: {', '.join(names.get(v, v) for v in values)}; "
            f"{gen.get('per_image')} images per reference, methods {', '.join(gen.get('methods', []))}. "
            + (f"The generator {trained} {source}." if trained == "learnt from" else f"The generator {trained}."))
    return Section("Generator", "", text)


def degenerate_warnings(table: pd.DataFrame) -> list[str]:
    """Runs that predicted (nearly) one class for every test image: their accuracy is that
    class's share of the test set, not something learnt — say so before any number."""
    if "degenerate" not in table or not table["degenerate"].fillna(False).astype(bool).any():
        return []
    bad = table[table["degenerate"].fillna(False).astype(bool)]
    top = bad.groupby("top_predicted_class")["top_predicted_share"].agg(["size", "max"])
    shares = ", ".join(f"{c} in {int(r['size'])} runs" for c, r in top.iterrows())
    return [f"{len(bad)} of {len(table)} runs are degenerate: they predicted one class for ≥ 95 % of the test "
            f"images ({shares}). Their accuracy equals that class's share of the test set (majority rate "
            f"{100 * bad['majority_class_rate'].max():.1f} %); read balanced accuracy and AUROC instead, and consider "
            "class_weighting = \"balanced\" or sampling = \"balanced\"."]


DOSE_AXES = ("synthetic_per_real", "method", "synthetic_methods")


def dose_fits(table: pd.DataFrame) -> dict:
    """Dose-response fits, one per method and per cell in which every other varying field is
    constant (the real-only runs of a cell serve as its ratio-0 point for every method).

    Returns {((field, value), ...): DoseFit}; a cell needs ≥ 3 distinct ratios.
    """
    t = add_method_column(table)
    if t["synthetic_per_real"].nunique() < 3 or is_imbalance_study(table):
        return {}
    keys = [k for k in varying_keys(t) if k not in DOSE_AXES]
    fits = {}
    for method in sorted(m for m in t["method"].unique() if m != "none"):
        rows = t[(t["method"] == method) | (t["synthetic_per_real"] == 0)]
        for cell, part in (rows.groupby(keys, dropna=False) if keys else [((), rows)]):
            if part["synthetic_per_real"].nunique() < 3:
                continue
            values = cell if isinstance(cell, tuple) else (cell,)
            key = (("method", method), *((k, _plain(v)) for k, v in zip(keys, values, strict=True)))
            fits[key] = fit_dose_response(part["synthetic_per_real"].to_numpy(), part["accuracy"].to_numpy(), reps=200)
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
