"""``--track URI`` (shared by ``experiment run``, ``train``, ``evaluate``) and ``experiment track``.

The option lives here, not in each command, so its help text and its meaning (``local`` =
an SQLite store in the results folder) are the same everywhere. MLflow is imported only when
a command actually tracks.
"""

from __future__ import annotations

from pathlib import Path

import typer


def _check(uri: str | None) -> str | None:
    """Refuse a malformed URI when the flag is read, before a study runs for minutes."""
    from dermsynth.experiments.tracking_spec import uri_problem

    problem = uri and uri_problem(uri)
    if problem:
        raise typer.BadParameter(problem)
    return uri


TrackOpt = typer.Option(None, "--track", metavar="URI", callback=_check,
                        help="Log the runs to MLflow at URI: `local` (sqlite:///OUT/mlflow.db, browse with `mlflow "
                             "ui`), sqlite:///PATH.db, or http://HOST:PORT of an MLflow server. An unreachable store "
                             "is a warning; the results stay in OUT.")


def track_folder(out: Path, uri: str | None, tracking=None) -> dict | None:
    """Log a study folder's runs when ``--track`` or a ``[tracking]`` table asks; None otherwise.
    A store that fails is logged as one warning by the tracker (the command still succeeds)."""
    if uri is None and tracking is None:
        return None
    from dermsynth.tracking.mlflow_store import track_study

    return track_study(out, tracking, uri)


def tracking_note(res: dict | None) -> str:
    """The human line about what was tracked ("" when nothing was, or it failed: warned already)."""
    if not res or not res["tracked"]:
        return ""
    from dermsynth.tracking.mlflow_store import summary_line

    return "\n" + summary_line(res)
