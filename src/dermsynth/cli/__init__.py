"""The ``dermsynth`` command line: ``dermsynth NOUN VERB``, one module per command group, each command a
thin call into the library. Only the two ways in (``quickstart``, ``init``) stand alone. Exit codes:
0 ok, 1 an audit found a problem (or runs failed), 2 usage error, 3 bad input or data."""

from __future__ import annotations

import typer

from dermsynth import __version__
from dermsynth.cli import (
    analysis,
    audit,
    data,
    deploy,
    experiment,
    generation,
    init,
    quickstart,
    reader_study,
    reader_study_access,
    synthetic_shards,
    train,
)
from dermsynth.cli.common import JsonOpt, deprecated_command, describe_group, emit, setup_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Synthetic data from diffusion models for medical image classifiers.")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
           _version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                         help="Print the version and exit.")) -> None:
    setup_logging(verbose)


classifier = typer.Typer(no_args_is_help=True)
classifier.command("train")(train.train)
classifier.command("evaluate")(deploy.evaluate)
classifier.command("predict")(deploy.predict)
classifier.command("export")(deploy.export)

analyses = typer.Typer(no_args_is_help=True)
analyses.command("embed")(analysis.embed)
analyses.command("quality")(analysis.quality)

experiment.app.command("report")(analysis.study_report)

data.app.command("import-synthetic")(synthetic_shards.import_synthetic_command)
data.app.command("export-synthetic")(synthetic_shards.export_synthetic_command)
reader_study.app.add_typer(reader_study_access.invite_app, name="invite")
reader_study.app.add_typer(reader_study_access.admin_app, name="admin")

GROUPS = [
    ("experiment", experiment.app, "A study from one config"),
    ("data", data.app, "Data sets"),
    ("generator", generation.app, "Synthetic images"),
    ("classifier", classifier, "One classifier, and using a trained one"),
    ("analysis", analyses, "What the synthetic images are like"),
    ("audit", audit.app, "Checks that exit 1 on a problem"),
    ("reader-study", reader_study.app, "Clinicians tell real from synthetic"),
]
for name, group, summary in GROUPS:
    describe_group(group, summary)
    app.add_typer(group, name=name)
app.command("quickstart")(quickstart.quickstart)
app.command("init")(init.init)

# The spellings of the last release: they work, hidden, with a line naming the new one.
FORMER = {"generate": ("generator sample", generation.generate),
          "finetune": ("generator finetune", generation.finetune),
          "train": ("classifier train", train.train), "evaluate": ("classifier evaluate", deploy.evaluate),
          "predict": ("classifier predict", deploy.predict), "export": ("classifier export", deploy.export),
          "embed": ("analysis embed", analysis.embed), "quality": ("analysis quality", analysis.quality),
          "report": ("experiment report --study DIR --to FILE", analysis.report)}
for old, (new, command) in FORMER.items():
    app.command(old, hidden=True)(deprecated_command(command, old, new))


@app.command("version", hidden=True)
def version(as_json: bool = JsonOpt) -> None:
    """The former spelling of ``dermsynth --version``."""
    emit({"version": __version__}, as_json, __version__)


def main() -> None:  # pragma: no cover - the console-script entry point
    app()
