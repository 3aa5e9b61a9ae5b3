"""MkDocs hook: adds the generated pages (home from the README, commands, config tables) to the site.

The pages come from ``dermsynth.cli.reference`` at build time, so they cannot drift from the
README, the CLI or the pydantic models; so does the navigation (guide, commands, config)."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

from dermsynth.cli.reference import site_nav, site_pages

ROOT = Path(__file__).resolve().parents[1]
PAGES: dict[str, str] = {}


def on_config(config):
    PAGES.update(site_pages((ROOT / "README.md").read_text()))
    config["nav"] = site_nav(PAGES, ROOT / "docs")
    return config


def on_files(files, config):
    for path, text in PAGES.items():
        files.append(File.generated(config, path, content=text))
    return files
