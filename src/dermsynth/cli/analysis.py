"""``dermsynth report``, ``embed`` and ``quality``: analysing a study and its synthetic images."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from dermsynth.cli import common as c


@c.handles_errors
def report(results: Path = typer.Argument(..., help="An experiment's output folder."),
           out: Path | None = typer.Option(None, help="HTML file (default RESULTS/report.html)."),
           ci: Literal["wald", "wilson"] = typer.Option("wald", help="Confidence intervals (wald as the paper)."),
           test: Literal["prop", "fisher"] = typer.Option("prop", help="Two-sample proportion test or Fisher's."),
           correction: bool = typer.Option(True, help="Yates' continuity correction (R's prop.test default)."),
           reader_study: list[Path] = typer.Option([], help="A reader-study folder to add as a section "
                                                            "(repeatable; RESULTS/reader_studies/* are found)."),
           as_json: bool = c.JsonOpt):
    """Statistics, figures and one self-contained HTML report (writes RESULTS/report.html, figures/, *.csv)."""
    from dermsynth.analysis.report import build_report

    path = build_report(results, out, ci=ci, test=test, correct=correction, reader_studies=reader_study)
    c.emit({"report": str(path)}, as_json, f"report → {path}")


def _study_or_options_split(results: Path | None, store: Path, dataset: str, root: Path | None, classes: str | None,
                            n_test: int, n_val: int, split_seed: int):
    """The study's own split when --results holds one (its stratification and cleaning), else the options'."""
    from dermsynth.data.splits import load_split
    from dermsynth.experiments.study_split import study_split_spec

    spec = study_split_spec(results, store) if results is not None else None
    if spec is None:  # say which split is used: the defaults' pool can be much larger than a study's
        c.note(f"real images: the training pool of --dataset {dataset} with --n-test {n_test} --n-val {n_val} "
               f"--split-seed {split_seed}; pass --results STUDY to use a study's own split")
    return load_split(spec or c.split_spec(dataset, root, classes, n_test, n_val, split_seed))


@c.handles_errors
def embed(store: Path = typer.Option(..., help="Synthetic store."), dataset: str = c.DatasetOpt,
          root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt, n_test: int = c.NTestOpt,
          n_val: int = c.NValOpt,
          split_seed: int = c.SplitSeedOpt, encoder: str = c.EncoderOpt, results: Path | None = c.ResultsOpt,
          out: Path | None = typer.Option(None, help="Folder for figures and numbers."),
          umap: bool = typer.Option(True, help="Also draw a UMAP projection."), as_json: bool = c.JsonOpt):
    """Fig. 2: PCA/UMAP projections, cosine distances real–real, real–synthetic, synthetic–reference.

    With --results of a study, its own split (stratification, cleaning) replaces the split options."""
    from dermsynth.analysis.embedding_study import embedding_study
    from dermsynth.models.encoders import make_encoder

    c.require_dir(store, "synthetic store", "pass the folder `dermsynth generate --out` wrote")  # before any output
    folder = c.analysis_out(out, results, "embedding")
    split = _study_or_options_split(results, store, dataset, root, classes, n_test, n_val, split_seed)
    res = embedding_study(split, store, make_encoder(encoder), folder, umap=umap)
    c.emit(res, as_json, f"mean cosine distances: {c.plain(res['means'])} → {folder}")


@c.handles_errors
def quality(store: Path = typer.Option(..., help="Synthetic store."), dataset: str = c.DatasetOpt,
            root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt, n_test: int = c.NTestOpt,
            n_val: int = c.NValOpt, split_seed: int = c.SplitSeedOpt, encoder: str = c.EncoderOpt,
            results: Path | None = c.ResultsOpt, out: Path | None = typer.Option(None), as_json: bool = c.JsonOpt):
    """FID, KID, precision/recall per method and class, with bootstrap CIs (writes quality.csv).

    With --results of a study, its own split (stratification, cleaning) replaces the split options."""
    from dermsynth.analysis.embedding_study import quality_study
    from dermsynth.models.encoders import make_encoder

    c.require_dir(store, "synthetic store", "pass the folder `dermsynth generate --out` wrote")  # before any output
    folder = c.analysis_out(out, results, "quality")
    split = _study_or_options_split(results, store, dataset, root, classes, n_test, n_val, split_seed)
    table = quality_study(split, store, make_encoder(encoder), folder)
    cols = ["group", "n_real", "n_synthetic", "fid", "kid", "precision", "recall"]
    c.emit(table[cols].to_dict(orient="records"), as_json, lambda: c.say(table[cols].to_string()))
