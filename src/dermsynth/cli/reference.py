"""The documentation site's generated pages: the home page (the README), one page per command and
one per config table; the guide pages under docs/guide are written by hand.

Generated at build time (``docs/hooks.py``) from the README, the typer app and the pydantic
models themselves, so the site cannot drift from the code: a new option, field or default
appears on the next build. A config field's text is its pydantic description, else the
comment beside or above it in the model's source — the comments the code is read with.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import textwrap
import tokenize
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

# (page, TOML table, model, what the table is for)
CONFIG_TABLES: list[tuple[str, str, str, str]] = [
    ("experiment", "top level", "dermsynth.experiments.spec:ExperimentSpec",
     "The keys at the top of an experiment config (`dermsynth experiment run CONFIG`); each table below has "
     "its own page."),
    ("base", "[base] and [grid]", "dermsynth.train.spec:RunSpec",
     "Every setting of one classifier run. `[base]` sets a field for every cell; `[grid]` lists values to "
     "cross (`n_real = [1, 16, 32]`); `[[variants]]` adds paired settings. `dermsynth classifier train --config` takes "
     "the same fields."),
    ("generator", "[generator]", "dermsynth.experiments.generator_spec:GeneratorSpec",
     "How the synthetic store is made: backend, methods, images per reference, sampling, fine-tuning; each "
     "backend's own settings are a table of their own (the next pages). Configs that still write those settings "
     "flat in `[generator]` load, with a deprecation warning naming each setting's table."),
    ("generator-builtin", "[generator.builtin]", "dermsynth.generate.builtin.config:BuiltinConfig",
     "The built-in generator: a trained model to use, or the architecture, training and fine-tuning of one "
     "trained here, and its sampler. The table is the backend's own config, handed to training as is."),
    ("generator-sd", "[generator.sd]", "dermsynth.generate.backends.sd_config:StableDiffusionConfig",
     "Stable Diffusion: the text-to-image and inpainting models (hub ids or local folders) and the resolution."),
    ("generator-dreambooth", "[generator.dreambooth]", "dermsynth.generate.dreambooth_config:DreamBoothConfig",
     "DreamBooth fine-tuning of Stable Diffusion (`finetune = \"all\"` or `\"per-class\"`); the authors' "
     "settings are the defaults. The table is the fine-tune's own config, handed to it as is."),
    ("imbalance", "[imbalance]", "dermsynth.experiments.spec:ImbalanceSpec",
     "Fig. S-2 as a grid: each rare class down-sampled, in three arms."),
    ("tracking", "[tracking]", "dermsynth.experiments.tracking_spec:TrackingSpec",
     "Log the study's runs to MLflow (also `--track URI` on `experiment run`, `train`, `evaluate`, "
     "`quickstart`; `dermsynth experiment track OUT --to URI` afterwards)."),
    ("slurm", "[slurm]", "dermsynth.experiments.slurm_spec:SlurmSpec",
     "Resources of `executor = \"slurm\"` (also `--slurm-*` options on `experiment run`): "
     "docs/guide/06-slurm.md."),
]


def load_model(target: str) -> type[BaseModel]:
    module, _, name = target.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """{field: the comment on its line, else the comment lines right above it} from the source of
    the model and its bases."""
    out: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        comments = {tok.start[0]: (tok.string.lstrip("# ").rstrip(), tok.line.strip().startswith("#"))
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                    if tok.type == tokenize.COMMENT}
        body = ast.parse(source).body[0]
        for node in getattr(body, "body", []):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            inline = [comments[n][0] for n in range(node.lineno, node.end_lineno + 1)
                      if n in comments and not comments[n][1]]
            above, n = [], node.lineno - 1
            while n in comments and comments[n][1] and lines[n - 1].strip():
                above.insert(0, comments[n][0])
                n -= 1
            if above and len(" ".join(above)) < 60 and not above[-1].endswith("."):
                above = []  # a heading over a group of fields ("# synthetic data"), not this field's text
            text = " ".join(inline or above)
            if text:
                out[node.target.id] = text
    return out


def type_name(annotation: Any) -> str:
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return re.sub(r"\b(typing|pydantic|dermsynth)\.[\w.]*?(\w+)\b", r"\2", text).replace("NoneType", "None")


def default_of(field) -> str:
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{field.default!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def identity_of(model: type[BaseModel], name: str) -> str:
    """The field's declared role and tags (field_roles.py), as the page shows them."""
    from dermsynth.field_roles import declaration, role_of

    return ", ".join([role_of(model, name), *declaration(model, name).get("tags", [])])


def config_page(table: str, target: str, intro: str) -> str:
    model = load_model(target)
    notes = field_comments(model)
    rows = [f"| `{name}` | `{type_name(f.annotation)}` | {default_of(f)} | {identity_of(model, name)} | "
            f"{_cell(f.description or notes.get(name, ''))} |"  # a | inside `code` stays in its cell
            for name, f in model.model_fields.items()]
    return "\n".join([f"# Config: {table}", "", intro, "",
                      f"Generated from `{target.replace(':', '.')}` when the site is built. *Role* says what a "
                      "field is to identity (dermsynth/field_roles.py): a `setting` changes results (in run ids, "
                      "a cell axis when it varies; in the store's identity for the generator); `replicate` (the "
                      "seed) and `input` (pinned digests) are in run ids but never cell axes; `operational` "
                      "changes how, not what; `provenance` is recorded for checks. Tags name what else the field "
                      "belongs to: `arm` (the synthetic arm), `since-ids` (in ids only when set), or a stage whose "
                      "reuse key it is part of.", "",
                      "| field | type | default | role | meaning |", "|---|---|---|---|---|", *rows, ""])


def commands(group, prefix: str = "dermsynth") -> list[tuple[str, Any]]:
    """Every documented leaf command of the CLI as ("dermsynth experiment run", command), in order.
    (Duck-typed: typer ships its own copy of click.)"""
    if hasattr(group, "list_commands"):
        ctx = group.context_class(group)
        out = []
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if not command.hidden:  # a former spelling: it works, but is not documented
                out += commands(command, f"{prefix} {name}")
        return out
    return [(prefix, group)]


def command_page(path: str, cmd) -> str:
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    usage = " ".join([path] + [p.name.upper() for p in args] + ["[OPTIONS]"])
    rows = []
    for p in cmd.params:
        if p.param_type_name == "argument":
            rows.append(f"| `{p.name.upper()}` (argument) | {'required' if p.required else ''} | "
                        f"{_cell(getattr(p, 'help', None) or '')} |")
        elif p.param_type_name == "option" and not p.hidden:
            names = " / ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            plain = isinstance(p.default, str | int | float | Path) and p.default not in (False, "")
            default = f"`{p.default}`" if plain else ""
            rows.append(f"| {names} | {default} | {_cell(p.help or '')} |")
    doc = inspect.cleandoc(cmd.help or "")
    return "\n".join([f"# `{path}`", "", doc, "", "```", usage, "```", "", "| option | default | meaning |",
                      "|---|---|---|", *rows, "", "Generated from the command's definition when the site is built.",
                      ""])


def index_page(readme: str) -> str:
    """The site's home: the README, its links into docs/ made relative to the site."""
    return re.sub(r"\]\(docs/", "](", readme)


def site_pages(readme: str) -> dict[str, str]:
    """Every generated page of the site: {path under docs/: markdown}."""
    from typer.main import get_command

    from dermsynth.cli import app

    pages = {"index.md": index_page(readme)}
    for page, table, target, intro in CONFIG_TABLES:
        pages[f"config/{page}.md"] = config_page(table, target, intro)
    for path, cmd in commands(get_command(app)):
        pages[f"commands/{path.removeprefix('dermsynth ').replace(' ', '-')}.md"] = command_page(path, cmd)
    return pages


def site_nav(pages: dict[str, str], docs_dir: Path) -> list:
    """The site's navigation: home, the hand-written guide (docs/guide/*.md, in file-name order),
    the measurements, then the generated command and config pages."""
    guide = {f"guide/{p.name}": p.read_text() for p in sorted((docs_dir / "guide").glob("*.md"))}
    every = {**pages, **guide}

    def title(path: str) -> str:
        return every[path].splitlines()[0].lstrip("# ").strip("`")

    def section(folder: str) -> list:
        return [{title(p): p} for p in sorted(every) if p.startswith(f"{folder}/")]

    return [{"Home": "index.md"}, {"Guide": section("guide")}, {"Measurements": "benchmarks.md"},
            {"Commands": section("commands")}, {"Config tables": section("config")}]
