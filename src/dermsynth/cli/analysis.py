"""``dermsynth experiment report`` and ``dermsynth analysis embed|quality``: a study's report, and what its
synthetic images look like beside the real ones."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from dermsynth.cli import common as c
from dermsynth.errors import ConfigError

ReportCiOpt = typer.Option("wald", help="Confidence intervals (wald as the paper).")
ReportTestOpt = typer.Option("prop", help="Two-sample proportion test or Fisher's.")
ReportCorrectionOpt = typer.Option(True, help="Yates' continuity correction (R's prop.test default).")
ReaderStudyOpt = typer.Option([], help="A reader-study folder to add as a section (repeatable; "
                                       "STUDY/reader_studies/* are found).")


@c.handles_errors
def study_report(config: str | None = typer.Argument(None, help="The config or preset whose study to report "
                                                                "(its folder is runs/NAME unless --study)."),
                 study: Path | None = c.StudyOpt,
                 to: Path | None = typer.Option(None, "--to", help="The HTML file (default STUDY/report.html)."),
                 ci: Literal["wald", "wilson"] = ReportCiOpt, test: Literal["prop", "fisher"] = ReportTestOpt,
                 correction: bool = ReportCorrectionOpt, reader_study: list[Path] = ReaderStudyOpt,
                 as_json: bool = c.JsonOpt):
    """Statistics, figures and one self-contained HTML report (writes STUDY/report.html, figures/, *.csv)."""
    folder = study_of(config, study)
    _write_report(folder, to, ci, test, correction, reader_study, as_json)


def study_of(config: str | None, study: Path | None) -> Path:
    """The study folder of ``--study``, else of CONFIG (runs/NAME); a study folder given as CONFIG is
    taken as the study (the former positional spelling)."""
    if study is not None:
        return c.require_dir(study, "study", "pass the folder `dermsynth experiment run` wrote")
    if config is None:
        raise ConfigError("name the study: a CONFIG (its study is runs/NAME) or --study DIR")
    if (Path(config) / "runs").is_dir():  # a study, not e.g. the folder of images a config is named after
        c.deprecation(f"a study folder as CONFIG ({config})", f"--study {config}")
        return Path(config)
    return c.require_dir(c.default_study(config), "study", f"run `dermsynth experiment run {config}` first, or "
                         "pass the folder it wrote with --study")


def _write_report(folder: Path, to: Path | None, ci: str, test: str, correction: bool, reader_study: list[Path],
                  as_json: bool) -> None:
    from dermsynth.analysis.report import build_report

    path = build_report(folder, to, ci=ci, test=test, correct=correction, reader_studies=reader_study)
    c.emit({"report": str(path)}, as_json, f"report → {path}")


@c.handles_errors
def report(results: Path = typer.Argument(..., help="The study folder."),
           out: Path | None = typer.Option(None, help="HTML file (default RESULTS/report.html)."),
           ci: Literal["wald", "wilson"] = ReportCiOpt, test: Literal["prop", "fisher"] = ReportTestOpt,
           correction: bool = ReportCorrectionOpt, reader_study: list[Path] = ReaderStudyOpt,
           as_json: bool = c.JsonOpt):
    """The former spelling of `dermsynth experiment report --study DIR --to FILE`."""
    _write_report(results, out, ci, test, correction, reader_study, as_json)


def study_or_options_split(results: Path | None, store: Path, dataset: str, root: Path | None, classes: str | None,
                            n_test: int, n_val: int, split_seed: int):
    """The study's own split when --study holds one (its stratification and cleaning), else the options'."""
    from dermsynth.data.splits import load_split
    from dermsynth.experiments.study_split import study_split_spec

    spec = study_split_spec(results, store) if results is not None else None
    if spec is None:  # say which split is used: the defaults' pool can be much larger than a study's
        c.note(f"real images: the training pool of --dataset {dataset} with --n-test {n_test} --n-val {n_val} "
               f"--split-seed {split_seed}; pass --study DIR to use a study's own split")
    return load_split(spec or c.split_spec(dataset, root, classes, n_test, n_val, split_seed))


@c.handles_errors
def embed(store: Path = typer.Option(..., help="Synthetic store."), dataset: str = c.DatasetOpt,
          root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt, n_test: int = c.NTestOpt,
          n_val: int = c.NValOpt,
          split_seed: int = c.SplitSeedOpt, encoder: str = c.EncoderOpt, study: Path | None = c.AnalysisStudyOpt,
          out: Path | None = typer.Option(None, help="Folder for figures and numbers (default "
                                          "STUDY/analysis/embedding, else ./embedding)."),
          umap: bool = typer.Option(True, help="Also draw a UMAP projection."), results: Path | None = c.OldResultsOpt,
          as_json: bool = c.JsonOpt):
    """Fig. 2: PCA/UMAP projections, cosine distances real–real, real–synthetic, synthetic–reference.

    With --study, the study's own split (stratification, cleaning) replaces the split options."""
    from dermsynth.analysis.embedding_study import embedding_study
    from dermsynth.models.encoders import make_encoder

    c.require_dir(store, "synthetic store", "pass the folder `dermsynth generator sample --out` wrote")
    results = c.renamed(study, results, "--results", "--study")
    folder = c.analysis_out(out, results, "embedding")
    split = study_or_options_split(results, store, dataset, root, classes, n_test, n_val, split_seed)
    res = embedding_study(split, store, make_encoder(encoder), folder, umap=umap)
    c.emit(res, as_json, f"mean cosine distances: {c.plain(res['means'])} → {folder}")


@c.handles_errors
def quality(store: Path = typer.Option(..., help="Synthetic store."), dataset: str = c.DatasetOpt,
            root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt, n_test: int = c.NTestOpt,
            n_val: int = c.NValOpt, split_seed: int = c.SplitSeedOpt, encoder: str = c.EncoderOpt,
            study: Path | None = c.AnalysisStudyOpt,
            out: Path | None = typer.Option(None, help="Folder for quality.csv (default STUDY/analysis/quality, "
                                            "else ./quality)."),
            results: Path | None = c.OldResultsOpt, as_json: bool = c.JsonOpt):
    """FID, KID, precision/recall per method and class, with bootstrap CIs (writes quality.csv).

    With --study, the study's own split (stratification, cleaning) replaces the split options."""
    from dermsynth.analysis.embedding_study import quality_study
    from dermsynth.models.encoders import make_encoder

    c.require_dir(store, "synthetic store", "pass the folder `dermsynth generator sample --out` wrote")
    results = c.renamed(study, results, "--results", "--study")
    folder = c.analysis_out(out, results, "quality")
    split = study_or_options_split(results, store, dataset, root, classes, n_test, n_val, split_seed)
    table = quality_study(split, store, make_encoder(encoder), folder)
    cols = ["group", "n_real", "n_synthetic", "fid", "kid", "precision", "recall"]
    c.emit(table[cols].to_dict(orient="records"), as_json, lambda: c.say(table[cols].to_string()))
