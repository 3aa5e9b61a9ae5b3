"""Write a study's run records to an MLflow tracking store.

One MLflow experiment per study (its config's name); a parent run per study carries the
report, the figures and the config; one child run per record carries the run spec
(parameters), the metrics, tags (cell, seed, digests) and the record and checkpoint
(artifacts). The tag ``dermsynth.key`` (the run id; ``external/NAME/RUN_ID`` for an external
evaluation) is looked up before anything is logged, so tracking a resumed study again adds
only the runs that are new. A run whose logging was cut off (status not FINISHED) is
replaced, not kept half-written.

The tracker is a copy: when it cannot be reached or fails, :func:`track_study` logs one
warning and returns; the study's results in its folder are untouched.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dermsynth import files
from dermsynth.errors import DataError
from dermsynth.experiments.external_evaluation import external_folders_of
from dermsynth.experiments.results import load_records, runs_dir
from dermsynth.experiments.tracking_spec import TrackingSpec, resolve_uri
from dermsynth.tracking.records import cell_fields, flatten, metrics_of, params_of, run_name, tags_of

log = logging.getLogger(__name__)

KEY = "dermsynth.key"
ARTIFACTS = "mlartifacts"  # beside an SQLite store, like `mlflow server`'s default
BATCH = 100  # MLflow takes at most 100 params / tags per log_batch call


class TrackingUnavailable(Exception):
    """The tracking store cannot be reached or written."""


@dataclass
class Entry:
    """One record to log: its key, where its files are, and which parent run it belongs to."""

    key: str
    record: dict
    record_path: Path
    folder: Path  # where the run's weights/ folder is (the records' folder)


def track_study(out: str | Path, tracking: TrackingSpec | None = None, uri: str | None = None,
                strict: bool = False) -> dict:
    """Log every finished run of the study in ``out`` (and its external evaluations, report and
    figures) that the store does not hold yet. ``uri`` overrides ``tracking.uri``.

    Returns {"tracked", "uri", "experiment", "logged", "skipped"} and, when the store could
    not be used, "warning" (also logged once) — it never raises for a store problem, unless
    ``strict`` (``experiment track``, whose whole job it is): then a DataError."""
    out = Path(out)
    tracking = tracking or TrackingSpec()
    target = resolve_uri(uri or tracking.uri, out)
    claim = files.read_json(out / "experiment.json") if (out / "experiment.json").exists() else {}
    name = tracking.experiment or claim.get("name") or out.resolve().name
    records = load_records(out)
    fields = cell_fields(records)
    entries = [Entry(r["run_id"], r, runs_dir(out) / f"{r['run_id']}.json", runs_dir(out)) for r in records]
    for folder in external_folders_of(out):
        entries += [Entry(f"external/{folder.name}/{r['run_id']}", r, runs_dir(folder) / f"{r['run_id']}.json",
                          runs_dir(out)) for r in load_records(folder)]
    parent = {"key": f"study/{claim.get('digest', out.resolve().name)}", "name": f"{name} (study)",
              "params": flatten({k: v for k, v in (claim.get("spec") or {}).items() if k != "tracking"}),
              "artifacts": [p for p in (out / "report.html", out / "experiment.json", out / "stage_timings.json",
                                        out / "figures") if p.exists()]}
    res = _guarded(target, name, lambda client: _log(client, target, name, entries, fields, parent,
                                                     tracking.checkpoints), tracking.timeout_seconds, strict)
    return {**res, "runs": len(entries)}


def track_records(records: list[dict], folder: str | Path, uri: str, experiment: str = "dermsynth-train",
                  checkpoints: bool = True, timeout: float = 5.0) -> dict:
    """Log single runs (``dermsynth classifier train``) whose records lie in ``folder``; same contract as
    :func:`track_study`, without a parent run."""
    folder = Path(folder)
    target = resolve_uri(uri, folder)
    entries = [Entry(r["run_id"], r, folder / f"{r['run_id']}.json", folder) for r in records]
    return _guarded(target, experiment, lambda client: _log(client, target, experiment, entries, [], None,
                                                            checkpoints), timeout)


def _guarded(uri: str, experiment: str, work, timeout: float, strict: bool = False) -> dict:
    """Run ``work(client)``; a store that cannot be reached or fails is one warning, not an error."""
    base = {"uri": uri, "experiment": experiment}
    try:
        client = open_store(uri, timeout)
        return {"tracked": True, **base, **work(client)}
    except Exception as exc:  # noqa: BLE001 - any store failure: the study's own results stand
        why = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if strict:
            raise DataError(f"tracking to {uri} failed: {why}; check the URI (a server must be running there) "
                            "and run again — runs already logged are not logged twice") from None
        warning = (f"tracking to {uri} failed ({why}); the results are in their folder — log them later with "
                   "`dermsynth experiment track OUT --to URI`")
        log.warning(warning)
        return {"tracked": False, **base, "logged": 0, "skipped": 0, "warning": warning}


def open_store(uri: str, timeout: float = 5.0):
    """An MlflowClient for ``uri``; a remote server is probed first, so an unreachable one costs
    ``timeout`` seconds, not MLflow's minutes of retries."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout).close()
        except OSError as exc:
            raise TrackingUnavailable(f"cannot connect to {parsed.hostname}:{port}: {exc}") from None
    if parsed.scheme == "sqlite":
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline: nothing leaves the machine
    from mlflow import MlflowClient  # lazy: importing MLflow is slow (docs/benchmarks.md)

    for noisy in ("alembic", "mlflow"):  # after the import, which sets MLflow's own levels
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def experiment_id(client, name: str, uri: str) -> str:
    """The id of experiment ``name``, created (artifacts beside an SQLite store) when missing."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACTS).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def logged_keys(client, exp_id: str) -> dict[str, tuple[str, str]]:
    """{dermsynth.key: (MLflow run id, status)} of the experiment's runs."""
    keys: dict[str, tuple[str, str]] = {}
    token = None
    while True:
        page = client.search_runs([exp_id], max_results=1000, page_token=token)
        for run in page:
            key = run.data.tags.get(KEY)
            if key and (key not in keys or run.info.status == "FINISHED"):
                keys[key] = (run.info.run_id, run.info.status)
        token = page.token
        if not token:
            return keys


def _log(client, uri: str, name: str, entries: list[Entry], fields: list[str], parent: dict | None,
         checkpoints: bool) -> dict:
    exp_id = experiment_id(client, name, uri)
    keys = logged_keys(client, exp_id)
    parent_id = None
    if parent is not None:  # one per study, whatever state an earlier call left it in
        parent_id = keys[parent["key"]][0] if parent["key"] in keys else _new_run(
            client, exp_id, keys, parent["key"], parent["name"], parent["params"], {}, {"dermsynth.kind": "study"})
    logged = skipped = 0
    for entry in entries:
        if keys.get(entry.key, ("", ""))[1] == "FINISHED":
            skipped += 1
            continue
        tags = {**tags_of(entry.record, fields), "dermsynth.kind": "external" if "external" in entry.record
                else "run"}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        name_ = run_name(entry.record, fields) + (f" · {entry.key.split('/')[1]}" if "external" in entry.record
                                                  else "")
        if entry.key in keys:  # cut off while it was logged: replace it, keep no half-written copy
            client.delete_run(keys[entry.key][0])
        run_id = _new_run(client, exp_id, keys, entry.key, name_, params_of(entry.record), metrics_of(entry.record),
                          tags)
        client.log_artifact(run_id, str(entry.record_path), "record")
        ckpt = entry.record.get("checkpoint") or {}
        weights = entry.folder / str(ckpt.get("path", ""))
        if checkpoints and ckpt.get("saved") and weights.is_file():
            client.log_artifact(run_id, str(weights), "checkpoint")
            meta = weights.with_name(weights.name.removesuffix(".safetensors") + ".model.json")
            if meta.is_file():
                client.log_artifact(run_id, str(meta), "checkpoint")
        client.set_terminated(run_id, "FINISHED")
        logged += 1
    if parent_id:
        for path in parent["artifacts"]:
            (client.log_artifacts if path.is_dir() else client.log_artifact)(
                parent_id, str(path), *(["figures"] if path.is_dir() else []))
        client.set_terminated(parent_id, "FINISHED")
    return {"logged": logged, "skipped": skipped, "experiment_id": exp_id, "parent_run_id": parent_id}


def _new_run(client, exp_id: str, keys: dict, key: str, name: str, params: dict[str, str],
             metrics: dict[str, float], tags: dict[str, str]) -> str:
    """A new run (status RUNNING until its artifacts are in) with its key, params, metrics, tags."""
    from mlflow.entities import Metric, Param

    run = client.create_run(exp_id, run_name=name, tags={KEY: key, **tags})
    now = int(time.time() * 1000)
    items: list[Any] = [Param(k, v[:6000]) for k, v in params.items()]
    for i in range(0, len(items), BATCH):
        client.log_batch(run.info.run_id, params=items[i:i + BATCH])
    metric_items = [Metric(k, v, now, 0) for k, v in metrics.items()]
    for i in range(0, len(metric_items), 1000):
        client.log_batch(run.info.run_id, metrics=metric_items[i:i + 1000])
    keys[key] = (run.info.run_id, "RUNNING")
    return run.info.run_id


def summary_line(res: dict) -> str:
    """One line for the CLI: what was logged where and how to look at it, or the warning."""
    if not res["tracked"]:
        return f"not tracked: {res['warning']}"
    look = (f"; browse: mlflow ui --backend-store-uri {res['uri']}" if res["uri"].startswith("sqlite:") else "")
    return (f"MLflow: {res['logged']} run(s) logged, {res['skipped']} already there → {res['uri']} "
            f"(experiment {res['experiment']!r}){look}")
