"""One self-contained HTML report of a study: config, tables, figures, samples, summary."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path

import pandas as pd
from PIL import Image

from dermsynth.analysis import figures
from dermsynth.analysis.summary import cell_summary, plain_summary, synthetic_comparisons
from dermsynth.errors import DermsynthError
from dermsynth.experiments.runner import load_records, results_table

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}img.fig{max-width:100%}.summary li{margin:.3em 0}.samples td{text-align:center}
.samples img{width:72px;height:72px;image-rendering:pixelated}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}"""


def _img_tag(path: Path, cls: str = "fig") -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img class="{cls}" src="data:image/png;base64,{data}">'


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
    from dermsynth.generate.store import read_manifest

    man = read_manifest(store)
    if not len(man):
        return "<p>No synthetic images.</p>"
    ref_paths = {}
    for rec_path in [Path(store) / "references.parquet"]:
        if rec_path.exists():
            ref_paths = dict(pd.read_parquet(rec_path)[["id", "path"]].itertuples(index=False))
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


def build_report(out_dir: str | Path, report_path: str | Path | None = None, title: str | None = None,
                 extra_sections: list[tuple[str, str]] | None = None, ci: str = "wald", test: str = "prop",
                 correct: bool = True) -> Path:
    """Analyse ``OUT/runs`` and write the HTML report (figures also saved under OUT/figures)."""
    out_dir = Path(out_dir)
    records = load_records(out_dir)
    if not records:
        raise DermsynthError(f"no finished runs under {out_dir / 'runs'}; run the experiment first")
    table = results_table(out_dir)
    table.to_csv(out_dir / "results.csv", index=False)
    exp = json.loads((out_dir / "experiment.json").read_text()) if (out_dir / "experiment.json").exists() else {}
    cells = cell_summary(table, ci)
    comps = synthetic_comparisons(table, records, test, correct)
    cells.to_csv(out_dir / "cells.csv", index=False)
    if len(comps):
        comps.to_csv(out_dir / "comparisons.csv", index=False)
    fig_dir = out_dir / "figures"
    fits = dose_fits(table)
    figs = [f for f in (
        figures.fig_accuracy_vs_nreal(table, comps, fig_dir),
        figures.fig_dose_response(table, fig_dir, fits),
        figures.fig_per_class_gain(table, fig_dir),
        figures.fig_skin_groups(table, fig_dir),
        figures.fig_imbalance(table, fig_dir),
    ) if f is not None]
    name = title or exp.get("name", out_dir.name)
    if test == "fisher":
        test_text = "Fisher's exact tests"
    elif correct:
        test_text = "two-sample proportion tests (Yates-corrected, as R's prop.test)"
    else:
        test_text = "two-sample proportion tests (uncorrected z-test)"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title>"
             f"<style>{CSS}</style></head><body><h1>dermsynth report — {html.escape(name)}</h1>",
             f"<p>{len(records)} runs · generated {time.strftime('%Y-%m-%d %H:%M')} · accuracy on the held-out "
             f"test set ({int(table['n_test'].iloc[0])} images), mean over seeds, 95 % {ci.title()} CI with n = "
             f"test-set size; {test_text} on mean accuracies, "
             "Benjamini–Hochberg over the figure's comparisons; bootstrap CIs resample test images (paired) "
             "and seeds.</p>",
             "<h2>Summary</h2><ul class='summary'>" +
             "".join(f"<li>{html.escape(s)}</li>" for s in plain_summary(comps)) + "</ul>"]
    if fits:
        parts.append("<ul class='summary'>" + "".join(
            f"<li>n_real={n}, transforms {'on' if tr else 'off'}: 90 % of the fitted gain is reached at "
            f"{f.ratio90:.1f} synthetic per real (95 % CI {f.ratio90_ci[0]:.1f}–{f.ratio90_ci[1]:.1f}); "
            f"plateau {100 * f.plateau:.1f} %.</li>" for (n, tr), f in fits.items() if f.converged) + "</ul>")
    parts.append("<h2>Figures</h2>" + "".join(_img_tag(f) for f in figs))
    parts.append("<h2>Accuracy per cell</h2>" + _fmt_table(cells))
    if len(comps):
        parts.append("<h2>With vs without synthetic data</h2>" + _fmt_table(comps))
    stores = sorted({r["spec"].get("synthetic_store") for r in records if r["spec"].get("synthetic_store")})
    for s in stores:
        if Path(s, "store.json").exists():
            parts.append(f"<h2>Real and synthetic samples</h2><p>store: {html.escape(s)}</p>" + sample_grid(s))
    parts.extend(_synthetic_analysis_sections(out_dir))
    for head, body in extra_sections or []:
        parts.append(f"<h2>{html.escape(head)}</h2>{body}")
    if exp:
        parts.append("<h2>Configuration</h2><pre>" + html.escape(json.dumps(exp.get("spec", exp), indent=2)) + "</pre>")
    parts.append("</body></html>")
    report_path = Path(report_path) if report_path else out_dir / "report.html"
    tmp = report_path.with_suffix(".tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(report_path)
    return report_path


def _synthetic_analysis_sections(out_dir: Path) -> list[str]:
    """Fig. 2, quality and memorization results written under OUT/analysis by `dermsynth embed` & co."""
    base = out_dir / "analysis"
    parts = []
    emb = base / "embedding" / "embedding.json"
    if emb.exists():
        res = json.loads(emb.read_text())
        rows = "".join(f"<tr><td>{k}</td><td>{v:.4f}</td><td>{res['paper_means'].get(k, '')}</td></tr>"
                       for k, v in res["means"].items())
        pngs = [Path(p) for p in res["figures"].values() if str(p).endswith(".png")]
        figs = "".join(_img_tag(p) for p in pngs if p.exists())
        parts.append(f"<h2>Embedding analysis (Fig. 2, {html.escape(res['encoder'])})</h2><table><tr><th>pairs</th>"
                     f"<th>mean cosine distance</th><th>paper</th></tr>{rows}</table>"
                     + _fmt_table(pd.DataFrame(res["tests"])) + figs)
    r = base / "recognisability" / "recognisability.json"
    if r.exists():
        info = json.loads(r.read_text())
        rows = pd.DataFrame(info["rows"])
        parts.append(f"<h2>Do synthetic images show their class?</h2><p>A {html.escape(info['backbone'])} at "
                     f"{info['image_size']} px trained on the {info['n_train_real']} real training-pool images only, "
                     "scored on real test images and on each method's synthetic images (Wilson 95 % CI; "
                     "one-sided exact binomial test against chance). Masked methods keep part of a training "
                     "image this classifier saw, so their rows are upper bounds; text-to-image has no such link."
                     "</p>" + _fmt_table(rows))
    q = base / "quality" / "quality.csv"
    if q.exists():
        parts.append("<h2>Synthetic-data quality</h2>" + pd.read_csv(q).to_html(index=False, float_format="%.4g"))
    m = base / "memorization" / "memorization.json"
    if m.exists():
        info = json.loads(m.read_text())
        parts.append(f"<h2>Memorization audit</h2><p>{info['flagged']} of {info['n_synthetic']} synthetic images "
                     f"flagged as near-copies of a real image (thresholds {info['thresholds']}).</p>")
    return parts


def dose_fits(table: pd.DataFrame) -> dict:
    from dermsynth.analysis.dose import fit_dose_response

    fits = {}
    if table["synthetic_per_real"].nunique() < 3:
        return fits
    for (n, tr), rows in table.groupby(["n_real", "transforms"]):
        if rows["synthetic_per_real"].nunique() >= 3:
            fits[(int(n), bool(tr))] = fit_dose_response(rows["synthetic_per_real"].to_numpy(),
                                                         rows["accuracy"].to_numpy(), reps=200)
    return fits

