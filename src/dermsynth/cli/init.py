"""``dermsynth init DIR``: survey a folder of your own images and write a study config for it."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import typer

from dermsynth.cli.common import JsonOpt, emit, handles_errors, say
from dermsynth.errors import ConfigError


@handles_errors
def init(images: Path = typer.Argument(..., help="A folder with one sub-folder of images per class."),
         name: str | None = typer.Option(None, help="The study's name (default: the folder's name)."),
         to: Path | None = typer.Option(None, "--to", help="Where to write the config (default ./NAME.toml)."),
         max_distance: int = typer.Option(4, help="Images whose perceptual hashes differ in at most this many of "
                                          "64 bits count as near duplicates."),
         force: bool = typer.Option(False, help="Overwrite an existing config file."),
         as_json: bool = JsonOpt):
    """Look at a folder of images — classes, sizes, unreadable files, duplicates, the same image under two
    labels — and write a commented study config that runs on it, before any compute is spent."""
    from dermsynth.data.survey import study_config, survey_folder, survey_lines

    study = name or re.sub(r"[^A-Za-z0-9_-]+", "-", images.resolve().name).strip("-") or "study"
    dest = to or Path(f"{study}.toml")
    if dest.exists() and not force:
        raise ConfigError(f"{dest} exists; pass --force to overwrite it, or --to another file")
    survey = survey_folder(images, max_distance)
    dest.write_text(study_config(survey, study))
    res = {**asdict(survey), "config": str(dest)}
    emit(res, as_json, lambda: say("\n".join(survey_lines(survey)) + f"\nwrote {dest}: next `dermsynth experiment "
                                                                       f"plan {dest}`, then `dermsynth experiment run "
                                                                       f"{dest}`"))
