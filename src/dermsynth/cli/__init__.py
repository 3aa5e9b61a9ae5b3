"""The ``dermsynth`` command line: one module per command group, each command a thin call
into the library. Exit codes: 0 ok, 1 an audit found a problem (or runs failed), 2 usage
error, 3 bad input or data."""

from __future__ import annotations

import typer

from dermsynth import __version__
from dermsynth.cli import analysis, audit, data, deploy, experiment, generation, init, quickstart, readers, train
from dermsynth.cli.common import JsonOpt, emit, setup_logging

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


app.add_typer(data.app, name="data")
app.add_typer(experiment.app, name="experiment")
app.add_typer(generation.app, name="generator")
app.add_typer(audit.app, name="audit")
app.add_typer(readers.app, name="reader-study")
app.command("generate")(generation.generate)
app.command("finetune")(generation.finetune)
app.command("train")(train.train)
app.command("report")(analysis.report)
app.command("embed")(analysis.embed)
app.command("quality")(analysis.quality)
app.command("quickstart")(quickstart.quickstart)
app.command("init")(init.init)
app.command("evaluate")(deploy.evaluate)
app.command("predict")(deploy.predict)
app.command("export")(deploy.export)


@app.command("version")
def version(as_json: bool = JsonOpt) -> None:
    """Print the version."""
    emit({"version": __version__}, as_json, __version__)


def main() -> None:  # pragma: no cover - the console-script entry point
    app()
