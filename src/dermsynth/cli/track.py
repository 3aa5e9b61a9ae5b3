"""``--track URI`` (shared by ``experiment run``, ``train``, ``evaluate``) and ``experiment track``.

The option lives here, not in each command, so its help text and its meaning (``local`` =
an SQLite store in the results folder) are the same everywhere. MLflow is imported only when
a command actually tracks.
"""

from __future__ import annotations

from pathlib import Path

import typer

from dermsynth.cli.common import say

TrackOpt = typer.Option(None, "--track", metavar="URI",
                        help="Log the runs to MLflow at URI: `local` (sqlite:///OUT/mlflow.db, browse with `mlflow "
                             "ui`), sqlite:///PATH.db, or http://HOST:PORT of an MLflow server. An unreachable store "
                             "is a warning; the results stay in OUT.")


def track_folder(out: Path, uri: str | None, tracking=None, quiet: bool = False) -> dict | None:
    """Log a study folder's runs when ``--track`` or a ``[tracking]`` table asks; None otherwise."""
    if uri is None and tracking is None:
        return None
    from dermsynth.tracking.mlflow_store import summary_line, track_study

    res = track_study(out, tracking, uri)
    if res["tracked"] and not quiet:  # a failure was logged as a warning already: once is enough
        say(summary_line(res))
    return res
