"""The report's sections beyond the core tables: samples, the generator, the audits' results,
what synthetic data cost, warnings. Each returns a Section the template lays out."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from dermsynth import files as dio
from dermsynth.data.synthetic_store import read_manifest, read_references


@dataclass
class Section:
    """One titled part of the report: an escaped sentence and an HTML fragment we built."""

    title: str
    html: str
    text: str = ""


def b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def img_tag(path: Path) -> str:
    return f'<img class="fig" src="data:image/png;base64,{b64(path)}">'


def thumb(path: str, size: int = 72) -> str:
    img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def fmt_table(df: pd.DataFrame) -> str:
    df = df.copy()
    for c in df.columns:
        if c.startswith(("acc", "ci_", "difference", "diff_", "balanced", "chance", "seed_ci", "detectable")):
            df[c] = (100 * df[c].astype(float)).map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
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
                     f"<td>{thumb(ref_paths[ref]) if ref in ref_paths else ''}</td>"]
            for m in methods:
                hit = g[(g["ref_id"] == ref) & (g["method"] == m)]
                cells.append(f"<td>{thumb(hit['path'].iloc[0]) if len(hit) else ''}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(rows) + "</table>"


def analysis_sections(out_dir: Path) -> list[Section]:
    """Fig. 2, quality and memorization results written under OUT/analysis by `dermsynth analysis embed` & co."""
    base = out_dir / "analysis"
    parts = []
    emb = base / "embedding" / "embedding.json"
    if emb.exists():
        res = dio.read_json(emb)
        rows = "".join(f"<tr><td>{k}</td><td>{v:.4f}</td><td>{res['paper_means'].get(k, '')}</td></tr>"
                       for k, v in res["means"].items())
        pngs = [Path(p) for p in res["figures"].values() if str(p).endswith(".png")]
        figs = "".join(img_tag(p) for p in pngs if p.exists())
        method = f", {res['method']} images" if res.get("method") else ""
        parts.append(Section(f"Embedding analysis (Fig. 2, {res['encoder']}{method})",
                             "<table><tr><th>pairs</th><th>mean cosine distance</th><th>paper</th></tr>"
                             f"{rows}</table>" + fmt_table(pd.DataFrame(res["tests"])) + figs,
                             "Tests use one value per real image or per reference (its mean distance), not "
                             "pairs that share images; Welch t tests, BH over all rows."))
    r = base / "recognisability" / "recognisability.json"
    if r.exists():
        info = dio.read_json(r)
        rows = pd.DataFrame(info["rows"])
        parts.append(Section(
            "Do synthetic images show their class?", fmt_table(rows),
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


SYNTHETIC_STAGES = ("train-generator", "finetune", "generate", "generator_training", "finetuning", "generation")


def cost_section(out_dir: Path, table: pd.DataFrame, comps: pd.DataFrame) -> Section | None:
    """What the synthetic data cost (measured wall time) per point of accuracy it changed."""
    path = out_dir / "stage_timings.json"
    if not path.exists() or not len(comps) or "wall_seconds" not in table:
        return None
    stages = dio.read_json(path)
    making = sum(v for k, v in stages.items() if k in SYNTHETIC_STAGES)
    with_syn = table.loc[table["synthetic_per_real"] > 0, "wall_seconds"]
    without = table.loc[table["synthetic_per_real"] == 0, "wall_seconds"]
    extra_training = max(0.0, float(with_syn.sum() - without.mean() * len(with_syn))) if len(without) else 0.0
    hours = (making + extra_training) / 3600
    gain = 100 * float(comps["difference"].mean())
    best = comps.loc[comps["difference"].idxmax()]
    per_point = f"{hours / gain:.2f} device-hours per point of mean gain" if gain > 0 else "no mean gain to pay for"
    best_verdict = (f"{best['verdict']}, seed-aware BH p = {best['p_seed_bh']:.2g}" if "verdict" in best
                    else f"BH p = {best['p_bh']:.2g}")
    text = (f"Making the synthetic data took {making / 3600:.2f} device-hours (generator training, fine-tuning, "
            f"generation) and training on it {extra_training / 3600:.2f} more than real-only runs would have: "
            f"{hours:.2f} h for a mean change of {gain:+.1f} points over {len(comps)} comparisons — {per_point}. "
            f"Best cell: {100 * best['difference']:+.1f} points ({best_verdict}). Measured on this run's "
            "hardware (OUT/stage_timings.json); `dermsynth experiment plan` projects it to other devices.")
    return Section("What the synthetic data cost", "", text)


def generator_section(gen: dict) -> Section:
    """Which generator made the synthetic images and what real images it learnt from."""
    names = {"none": "pretrained" if gen["backend"] == "sd" else "base model (no fine-tuning)",
             "all": "fine-tuned on all classes", "per-class": "fine-tuned per class"}
    values = gen["finetune"] if isinstance(gen["finetune"], list) else [gen["finetune"]]
    given = (gen.get(gen["backend"]) or {}).get("model") or gen.get("model")  # its table, or the flat spelling
    model = given or ("built-in, trained in this study" if gen["backend"] == "builtin" else "?")
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


