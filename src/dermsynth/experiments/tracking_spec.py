"""The ``[tracking]`` table of an experiment config, and where a tracking URI points.

    [tracking]
    uri = "sqlite:///runs/fig3/mlflow.db"   # default: sqlite:///OUT/mlflow.db
    experiment = "fig3-cpu"                 # default: the config's name
    checkpoints = true                      # log each run's saved weights as an artifact

Tracking settings do not change a study's results, so they are left out of its digest: adding
or removing a ``[tracking]`` table does not make the results folder "another config's".
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dermsynth.errors import ConfigError

LOCAL = "local"  # the offline default: an SQLite store in the results folder
DB_NAME = "mlflow.db"
SCHEMES = ("sqlite", "http", "https", "file", "databricks", "postgresql", "mysql", "mssql")


class TrackingSpec(BaseModel):
    """Where and how a study's runs are logged (MLflow)."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(LOCAL, description="MLflow tracking URI; `local` = sqlite:///OUT/mlflow.db (browse it with "
                                        "`mlflow ui --backend-store-uri sqlite:///OUT/mlflow.db`).")
    experiment: str | None = Field(None, description="MLflow experiment name (default: the config's name).")
    checkpoints: bool = Field(True, description="Log each run's saved weights (safetensors) as an artifact.")
    timeout_seconds: float = Field(5.0, gt=0, description="How long to wait for a remote tracking server "
                                                          "before warning and carrying on without it.")

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        problem = uri_problem(uri)
        if problem:
            raise ValueError(problem)
        return uri


def uri_problem(uri: str) -> str | None:
    """What is wrong with a tracking URI (checked when a config or flag is read, not after the
    study has run), or None."""
    if uri == LOCAL:
        return None
    scheme, sep, _ = uri.partition("://")
    if not sep or scheme.split("+")[0] not in SCHEMES:
        return (f"tracking URI {uri!r}: use `local` (sqlite:///OUT/{DB_NAME}), sqlite:///PATH/{DB_NAME}, "
                f"http://HOST:PORT of an MLflow server, or another MLflow store URI ({', '.join(SCHEMES)})")
    return None


def resolve_uri(uri: str | None, out: str | Path) -> str:
    """The MLflow URI of ``uri`` for a study in ``out``: ``local``/None is an SQLite file there.

    A relative ``sqlite:///`` path is made absolute (MLflow resolves it against the working
    directory, which differs between the CLI, tests and ``mlflow ui``)."""
    if uri is None or uri == LOCAL:
        return f"sqlite:///{(Path(out) / DB_NAME).resolve()}"
    problem = uri_problem(uri)
    if problem:
        raise ConfigError(problem)
    scheme, _, rest = uri.partition("://")
    if scheme == "sqlite" and rest.startswith("/") and not rest.startswith("//"):
        return f"sqlite:///{Path(rest[1:]).resolve()}"
    return uri
