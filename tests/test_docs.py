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
        assert all(o in page for p in cmd.params if p.param_type_name == "option" and not p.hidden
                   for o in p.opts), path
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
    assert not notes["synthetic_store"].startswith("synthetic data")  # a heading over a group is not a field's text


def test_every_option_argument_and_config_field_is_explained():
    """A newcomer reads the generated pages: a blank "meaning" is a defect the build must not ship."""
    blank = [f"{path} {p.opts or p.name}" for path, cmd in commands(get_command(app)) for p in cmd.params
             if not getattr(p, "hidden", False) and not (getattr(p, "help", None) or "").strip()]
    assert not blank, f"options without help: {blank}"
    for _, _, target, _ in CONFIG_TABLES:
        model = load_model(target)
        notes = field_comments(model)
        empty = [f for f, info in model.model_fields.items() if not (info.description or notes.get(f, "")).strip()]
        assert not empty, f"{target}: fields without a meaning: {empty}"


def test_former_spellings_work_hidden_with_a_line_naming_the_new_one():
    from typer.testing import CliRunner

    documented = {path for path, _ in commands(get_command(app))}
    assert "dermsynth generator sample" in documented and "dermsynth classifier train" in documented
    assert not {"dermsynth generate", "dermsynth train", "dermsynth report", "dermsynth version"} & documented
    res = CliRunner().invoke(app, ["generate", "--help"])
    assert res.exit_code == 0 and "--per-image" in res.output
    res = CliRunner().invoke(app, ["version"])
    assert res.exit_code == 0
    help_text = CliRunner().invoke(app, ["experiment", "--help"]).output
    assert "track" in help_text and "report" in help_text  # group help lists every command it holds
    said = CliRunner().invoke(app, ["experiment", "status", "quickstart", "--out", "no-such-study"]).output
    assert "--out is deprecated; use --study" in said and "no-such-study" in said  # the old flag still works
