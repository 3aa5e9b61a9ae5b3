"""What every command shares: console, logging, option definitions, errors → exit codes, --json.

Library code logs and raises; only the CLI prints. Messages are printed with rich markup
off, because markup swallows bracketed words ("add a [generator] section" would lose its
"[generator]").
"""

from __future__ import annotations

import functools
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer
from rich.console import Console
from rich.logging import RichHandler

from dermsynth.errors import EXIT_BAD_INPUT, ConfigDeprecationWarning, ConfigError, DataError, DermsynthError
from dermsynth.progress import progress_bars

if TYPE_CHECKING:
    from dermsynth.data.splits import SplitSpec

err_console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)

# The registries' names, written out so that `--help` and `version` import neither torch nor
# pandas (the registries live beside them); a test checks they equal the registries.
DATASET_NAMES = ("demo", "fitzpatrick17k", "ddi", "folder")
BACKEND_NAMES = ("builtin", "sd")
METHOD_NAMES = ("text-to-image", "inpaint", "outpaint", "in-then-outpaint")
ENCODER_NAMES = ("clip", "timm", "pixels")

MethodName = Literal[METHOD_NAMES]  # type: ignore[valid-type]
BackendName = Literal[BACKEND_NAMES]  # type: ignore[valid-type]

DatasetOpt = typer.Option("demo", "--dataset", help="The data set: " + " | ".join(DATASET_NAMES))
RootOpt = typer.Option(None, "--root", help="Folder holding the data set's files.")
ClassesOpt = typer.Option(None, "--classes", help="all | f17k9 | top-N | comma-separated list")
NTestOpt = typer.Option(40, "--n-test", help="Test images per class (or per skin-type group).")
NValOpt = typer.Option(40, "--n-val", help="Validation images per class.")
SplitSeedOpt = typer.Option(0, "--split-seed", help="Seed of the test/validation split.")
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
EncoderOpt = typer.Option("clip", "--encoder", help="KIND[:ARG], KIND one of " + " | ".join(ENCODER_NAMES)
                          + " (clip:PATH_OR_ID, timm:NAME, pixels:SIZE)")
StudyOpt = typer.Option(None, "--study", metavar="DIR", help="The study folder (default runs/NAME, where "
                        "`dermsynth experiment run NAME` writes).")
AnalysisStudyOpt = typer.Option(None, "--study", metavar="DIR", help="A study folder: its own split is used and "
                                "the results go to STUDY/analysis/<kind>, where the report finds them.")
# The spellings of one release ago, still accepted (with a deprecation line) but not shown.
OldOutOpt = typer.Option(None, "--out", hidden=True, help="Deprecated spelling of --study.")
OldResultsOpt = typer.Option(None, "--results", hidden=True, help="Deprecated spelling of --study.")

DEFAULT_STUDIES = Path("runs")


def default_study(config: str | Path) -> Path:
    """Where a config's study lives unless ``--study`` says otherwise: runs/NAME for NAME.toml or a preset."""
    return DEFAULT_STUDIES / Path(config).stem


def deprecation(old: str, new: str) -> None:
    """One stderr line for a spelling that still works for this release."""
    err_console.print(f"warning: {old} is deprecated; use {new} (the old spelling goes in the next release)",
                      markup=False, style="yellow", highlight=False)


def renamed(new: Any, old: Any, old_name: str, new_name: str) -> Any:
    """The value of an option under its new name, else under its deprecated one (with a warning line)."""
    if old is not None and new is None:
        deprecation(old_name, new_name)
        return old
    return new


def deprecated_command(fn: Callable, old: str, new: str) -> Callable:
    """``fn`` under its former name: same options, and a line saying the new spelling."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        deprecation(f"`dermsynth {old}`", f"`dermsynth {new}`")
        return fn(*args, **kwargs)

    return wrapper


def describe_group(app: typer.Typer, summary: str) -> None:
    """A group's help from the commands it holds (so it cannot omit one): "summary: a, b, c."."""
    names = [cmd.name or cmd.callback.__name__.replace("_", "-") for cmd in app.registered_commands
             if not cmd.hidden] + [group.name for group in app.registered_groups if not group.hidden]
    app.info.help = f"{summary}: {', '.join(names)}."


def split_spec(dataset: str, root: Path | None, classes: str | None, n_test: int, n_val: int,
               split_seed: int) -> SplitSpec:
    from dermsynth.data.splits import SplitSpec

    return SplitSpec(dataset=dataset, root=str(root) if root else None, classes=classes, n_test=n_test,
                     n_val=n_val, split_seed=split_seed)


def analysis_out(out: Path | None, results: Path | None, kind: str) -> Path:
    """``--out`` if given, else RESULTS/analysis/<kind> (so the report shows it), else ./<kind>."""
    if out is not None:
        return out
    return (results / "analysis" / kind) if results is not None else Path(kind)


def setup_logging(verbose: bool = False) -> None:
    handler = RichHandler(console=err_console, markup=False, show_path=False, show_time=False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], format="%(message)s",
                        force=True)
    for noisy in ("urllib3", "PIL", "matplotlib", "filelock", "httpx", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(warnings.showwarning, "dermsynth", False):
        warnings.showwarning = _show_warning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A config deprecation as one plain "warning:" line (it names the file and the new spelling),
    not Python's file:line header and source line; anything else as Python shows it."""
    if issubclass(category, ConfigDeprecationWarning):
        err_console.print(f"warning: {message}", markup=False, style="yellow", highlight=False)
    else:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


_show_warning.dermsynth = True  # type: ignore[attr-defined]
_PYTHON_SHOWWARNING = warnings.showwarning


def error(message: str) -> None:
    err_console.print(f"error: {message}", markup=False, style="bold red", highlight=False)


def note(message: str) -> None:
    """A remark on stderr (what an analysis used), so stdout keeps only the result (and --json)."""
    err_console.print(f"note: {message}", markup=False, highlight=False)


def say(message: str) -> None:
    """A human-readable result line on stdout (markup off)."""
    out_console.print(message, markup=False, highlight=False)


def emit(result: Any, as_json: bool, human: Callable[[], None] | str | None = None) -> None:
    """Print ``result`` as JSON (``--json``) or call/print the human rendering."""
    if as_json:
        typer.echo(json.dumps(asdict(result) if is_dataclass(result) else result, indent=2, default=str))
    elif callable(human):
        human()
    elif human is not None:
        say(human)


def handles_errors(fn: Callable) -> Callable:
    """Turn a DermsynthError into its message and exit code (2 usage, 3 bad input, 1 audit); and
    set progress bars for the whole command: on, unless ``--json`` (stdout stays JSON)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with progress_bars(not kwargs.get("as_json", False)):
                return fn(*args, **kwargs)
        except DermsynthError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a path the user gave that cannot be read or written: bad input, not a bug
            if exc.filename is None:
                raise
            error(f"{exc.filename}: {exc.strerror or exc}; check the path (and that its folder exists)")
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


def require_dir(path: Path, what: str, hint: str) -> Path:
    """``path`` as an existing folder, or a DataError naming it and what to do (``hint``)."""
    if not path.is_dir():
        raise DataError(f"{path} {'is not a folder' if path.exists() else 'does not exist'}: no {what} there; {hint}")
    return path


def require_positive(**values: float | None) -> None:
    """A ConfigError naming the first option that is set but not > 0 (``steps=0``, ``minutes=-1``)."""
    for name, value in values.items():
        if value is not None and not value > 0:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be > 0")


def plain(value: Any) -> str:
    """A dict or list for people, not as a Python repr: ``{'a': 1, 'b': 0.51234}`` → ``a 1, b 0.512``."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain(v)}" if not isinstance(v, dict) else f"{k} ({plain(v)})"
                         for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
