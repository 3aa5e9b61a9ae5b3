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
ResultsOpt = typer.Option(None, "--results", help="An experiment's output folder: results go to "
                          "RESULTS/analysis/<kind>, where `dermsynth report` finds them.")


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
