"""The documentation site builds with ``mkdocs build --strict`` (as CI runs the tests), and its
generated pages cover every README section, every command and every config field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.main import get_command

from dermsynth.cli import app
from dermsynth.cli.reference import CONFIG_TABLES, commands, field_comments, load_model
from dermsynth.train.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]


def test_docs_site_builds_strict_with_pages_generated_from_the_code(tmp_path):
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(site)], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    guide = sorted(p.name for p in (site / "guide").iterdir())
    assert guide == sorted(p.stem for p in (ROOT / "docs" / "guide").glob("*.md"))
    assert "your-own-images" in " ".join(guide) and "statistics" in " ".join(guide)
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150
    for path, cmd in commands(get_command(app)):
        page = (site / "commands" / path.removeprefix("dermsynth ").replace(" ", "-") / "index.html").read_text()
        assert all(o in page for p in cmd.params if p.param_type_name == "option" for o in p.opts), path
    assert "--track" in (site / "commands" / "experiment-run" / "index.html").read_text()
    for page, _, target, _ in CONFIG_TABLES:
        html = (site / "config" / page / "index.html").read_text()
        missing = [f for f in load_model(target).model_fields if f"<code>{f}</code>" not in html]
        assert not missing, f"config/{page} lacks {missing}"
    assert (site / "report_screenshot.png").exists()  # README images resolve on the site


def test_config_field_text_comes_from_the_models_source():
    notes = field_comments(RunSpec)
    assert "DDI-style" in notes["use_all_pool"]  # the comment on the field's line
    assert "steps-matched control" in notes["repeat_real"]  # the comment block above the field
    assert "synthetic_store" not in notes  # a heading over a group of fields is not a field's text
