"""The reader study in a report: a section for ``dermsynth experiment report`` and a standalone page."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from dermsynth import files
from dermsynth.analysis.report_sections import Section, fmt_table, thumb
from dermsynth.reader_study.analysis import analyse
from dermsynth.reader_study.database import DB_NAME


def _pct(v) -> str:
    return "–" if v is None or pd.isna(v) else f"{100 * v:.1f} %"


def _num(v) -> str:
    return "–" if v is None or pd.isna(v) else f"{v:.2f}"


def _p(v) -> str:
    return "–" if v is None or pd.isna(v) else f"{v:.2g}"


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """3 decimals for display, except p-values (formatted with 2 significant digits)."""
    return frame.round({c: 3 for c in frame.columns if not c.startswith("p_") and "_p_" not in c
                        and not c.endswith("_p_value")})


def reader_study_section(study: str | Path, res: dict | None = None) -> Section:
    """The study's analysis as a report section (``res``: :func:`analyse`'s result, when at hand)."""
    study = Path(study)
    res = analyse(study) if res is None else res
    if not res.get("answers"):
        return Section(f"Reader study: {study.name}", "<p>No answers yet.</p>")
    p, agree = res["pooled"] or {}, res["agreement"] or {}
    kappa = agree.get("fleiss_kappa")
    kappa_text = (f"{kappa:.2f} over {agree.get('items', 0)} items answered by every reader" if kappa is not None
                  else f"undefined ({html.escape(str(agree.get('note', 'not computed')))})")
    lines = [f"<p>{res['readers']} readers, {res['answers']} answers. Accuracy at telling synthetic from real: "
             f"<b>{_pct(p.get('accuracy'))}</b> (95 % CI {_pct(p.get('ci_low'))}–{_pct(p.get('ci_high'))}, "
             f"p = {_p(p.get('p_value'))} against 50 %; {p.get('readers')} readers × {p.get('items')} items, both "
             f"counted as samples); ROC AUC of the confidence ratings {_num(p.get('auc'))} (CI "
             f"{_num(p.get('auc_ci_low'))}–{_num(p.get('auc_ci_high'))}, p = {_p(p.get('auc_p_value'))} against "
             f"0.5); sensitivity {_pct(p.get('sensitivity'))}, specificity {_pct(p.get('specificity'))}, "
             f"d′ {_num(p.get('d_prime'))}, criterion c {_num(p.get('criterion'))} (c > 0: a leaning to answer "
             f"“real”); Fleiss' κ {kappa_text}.</p>"]
    if res["pairs"]:
        q = res["pairs"]
        lines.append(f"<p>Pairs (synthetic beside its real reference): the synthetic one picked in "
                     f"{_pct(q['accuracy'])} (CI {_pct(q['ci_low'])}–{_pct(q['ci_high'])}, n = {q['n']}).</p>")
    methods = res.get("by_method")
    if methods is not None and len(methods):
        lines += ["<h3>By generation method: signal detection against the real items (BH over methods)</h3>",
                  fmt_table(_rounded(methods))]
    lines += ["<h3>Per reader</h3>", fmt_table(_rounded(res["per_reader"]))]
    if len(res["breakdown"]):
        lines += ["<h3>Accuracy by class and skin-type group (BH within each)</h3>",
                  fmt_table(_rounded(res["breakdown"]))]
    gallery = "".join(f"<figure style='display:inline-block;margin:4px'>"
                      f"{thumb(str(study / 'items' / (r.image_a + '.jpg')), 96)}<figcaption>"
                      f"{html.escape(str(r.label))}, {html.escape(str(r.method))}: "
                      f"{100 * r.fooled_share:.0f} % of {r.readers}</figcaption></figure>"
                      for r in res["fooled"].itertuples() if r.fooled_share > 0)
    if gallery:
        lines += ["<h3>Synthetic images that fooled most readers</h3>", gallery]
    return Section(f"Reader study: {study.name}", "\n".join(lines),
                   "Real vs synthetic, answered one image at a time; tests with reader and item effects (MRMC), "
                   "signal detection per method.")


def find_studies(out_dir: str | Path) -> list[Path]:
    base = Path(out_dir) / "reader_studies"
    return sorted(p.parent for p in base.glob(f"*/{DB_NAME}")) if base.is_dir() else []


def write_study_report(study: str | Path, path: str | Path | None = None, res: dict | None = None) -> Path:
    """A standalone HTML page of the study's analysis."""
    section = reader_study_section(study, res)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(section.title)}</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:20px auto}"
            "td,th{padding:3px 8px;border-bottom:1px solid #ddd}</style></head><body>"
            f"<h1>{html.escape(section.title)}</h1><p>{html.escape(section.text)}</p>{section.html}</body></html>")
    return files.write_text(Path(path) if path else Path(study) / "report.html", page)
