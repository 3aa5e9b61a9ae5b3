"""Experiment tracking with the real MLflow on an SQLite store: every cell and seed logged with
the record's metrics, nothing duplicated on a resume, an unreachable store a warning only."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dermsynth.cli import app
from dermsynth.errors import ConfigError
from dermsynth.experiments.results import load_records
from dermsynth.experiments.spec import validate_experiment
from dermsynth.experiments.tracking_spec import resolve_uri
from dermsynth.tracking.records import cell_fields, cell_of, metrics_of


def run(*args, code: int = 0):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == code, f"exit {res.exit_code} != {code}\n{res.output}\n{res.exception!r}"
    return res


def tiny_config(path: Path, demo_root: Path, tracking: str = "") -> Path:
    """A 2-cell × 2-seed study of 1-epoch runs as a TOML file (as a user writes it)."""
    base = dict(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4,
                image_size=32, backbone="test_efficientnet", max_epochs=1, patience=1,
                cache_dir=str(demo_root / "cache"), threads=1)
    lines = ['name = "tracked"', "seeds = 2", "[base]"] + [f"{k} = {json.dumps(v)}" for k, v in base.items()]
    path.write_text("\n".join(lines + ["[grid]", "n_real = [2, 4]", tracking]) + "\n")
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (creating its tables takes MLflow ~7 s)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def mlflow_runs(uri: str, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment])


def assert_runs_match_records(frame, records: list[dict]) -> None:
    """One finished MLflow run per record, keyed by run id, with the record's cell, seed and metrics."""
    runs = frame[frame["tags.dermsynth.kind"] == "run"].set_index("tags.dermsynth.run_id")
    assert sorted(runs.index) == sorted(r["run_id"] for r in records)
    assert set(runs["status"]) == {"FINISHED"}
    fields = cell_fields(records)
    assert {(r["tags.dermsynth.cell"], r["tags.dermsynth.seed"]) for _, r in runs.iterrows()} == {
        (cell_of(rec, fields), str(rec["spec"]["seed"])) for rec in records}
    for rec in records:
        row = runs.loc[rec["run_id"]]
        m = rec["metrics"]
        assert row["metrics.accuracy"] == pytest.approx(m["accuracy"])
        assert row["metrics.balanced_accuracy"] == pytest.approx(m["balanced_accuracy"])
        assert row["metrics.ece"] == pytest.approx(m["calibration"]["ece"])
        for group, acc in m["per_skin_group_accuracy"].items():
            assert row[f"metrics.accuracy.group.{group}"] == pytest.approx(acc)
        assert row["params.n_real"] == str(rec["spec"]["n_real"])
        assert row["tags.dermsynth.lock_sha256"] == str(rec["environment"]["lock"]["sha256"])
        assert set(metrics_of(rec)) <= {c.removeprefix("metrics.") for c in frame.columns}


def test_experiment_run_track_logs_every_cell_and_seed_once(demo_root, tmp_path, store):
    config, out = tiny_config(tmp_path / "tracked.toml", demo_root), tmp_path / "out"
    first = run("experiment", "run", config, "--study", out, "--workers", "1", "--track", store)
    assert "MLflow: 4 run(s) logged" in first.output
    records = load_records(out)
    frame = mlflow_runs(store, "tracked")
    assert len(records) == 4 and len(frame) == 5  # 2 cells × 2 seeds + the study's parent run
    assert_runs_match_records(frame, records)
    parent = frame[frame["tags.dermsynth.kind"] == "study"]["run_id"].item()
    assert set(frame[frame["tags.dermsynth.kind"] == "run"]["tags.mlflow.parentRunId"]) == {parent}
    # a resumed study (nothing left to run) and a later `experiment track` add nothing
    again = run("experiment", "run", config, "--study", out, "--workers", "1", "--track", store)
    assert "0 run(s) logged, 4 already there" in again.output
    res = json.loads(run("experiment", "track", out, "--to", store, "--json").stdout)
    assert (res["logged"], res["skipped"]) == (0, 4)
    assert len(mlflow_runs(store, "tracked")) == 5
    # a run whose logging was cut off is replaced, not kept half-written nor duplicated
    from mlflow import MlflowClient

    client = MlflowClient(store)
    cut = frame[frame["tags.dermsynth.kind"] == "run"]["run_id"].iloc[0]
    client.set_terminated(cut, "KILLED")
    res = json.loads(run("experiment", "track", out, "--to", store, "--json").stdout)
    assert (res["logged"], res["skipped"]) == (1, 3)
    after = mlflow_runs(store, "tracked")
    assert len(after) == 5 and cut not in set(after["run_id"])
    assert_runs_match_records(after, records)
    # `train --track` logs a single run (its record and checkpoint as artifacts)
    single = json.loads(run("classifier", "train", "--out", tmp_path / "single", "--dataset", "demo", "--root",
                            demo_root, "--n-real", "2", "--backbone", "test_efficientnet", "--image-size", "32",
                            "--max-epochs", "1", "--track", store, "--json").stdout)
    assert single["tracking"]["logged"] == 1
    train_run = mlflow_runs(store, "dermsynth-train")
    assert list(train_run["tags.dermsynth.run_id"]) == [single["run_id"]]
    artifacts = {a.path for a in client.list_artifacts(train_run["run_id"].item(), "checkpoint")}
    assert artifacts == {f"checkpoint/{single['run_id']}.safetensors", f"checkpoint/{single['run_id']}.model.json"}


def test_tiny_quickstart_tracked_with_its_report(tiny_quickstart, store):
    """The quickstart's own study (generator, stores, methods): every cell and seed, and the report."""
    _, out, report = tiny_quickstart
    res = json.loads(run("experiment", "track", "--study", out, "--uri", store, "--experiment", "quickstart",
                         "--no-checkpoints", "--json").stdout)
    records = load_records(out)
    assert res["logged"] == len(records) == 12
    frame = mlflow_runs(store, "quickstart")
    assert_runs_match_records(frame, records)
    assert {"synthetic_per_real=0", "synthetic_per_real=2"} <= {
        part for cell in frame["tags.dermsynth.cell"].dropna() for part in cell.split()}
    from mlflow import MlflowClient

    parent = frame[frame["tags.dermsynth.kind"] == "study"]["run_id"].item()
    names = {a.path for a in MlflowClient(store).list_artifacts(parent)}
    assert {"report.html", "figures", "experiment.json"} <= names
    assert report.name == "report.html"


def test_unreachable_store_is_one_warning_and_the_study_keeps_its_results(demo_root, tmp_path):
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    config = tiny_config(tmp_path / "c.toml", demo_root, f'[tracking]\nuri = "{uri}"')
    out = tmp_path / "out"
    res = run("experiment", "run", config, "--study", out, "--workers", "1")
    said = " ".join(res.output.split())  # the log handler wraps long lines
    assert said.count("tracking to") == 1 and f"tracking to {uri} failed" in said and "experiment track" in said
    assert len(load_records(out)) == 4  # the study completed and kept its results
    # `experiment track` exists to track: there the same store is an error (exit 3) naming it
    failed = run("experiment", "track", out, "--to", uri, code=3)
    assert uri in failed.output
    run("experiment", "track", tmp_path / "nowhere", code=3)


def test_tracking_table_is_validated_and_not_part_of_the_digest(tmp_path):
    raw = {"name": "x", "seeds": 1, "grid": {"n_real": [2]}}
    assert validate_experiment({**raw, "tracking": {"uri": "local"}}).digest() == validate_experiment(raw).digest()
    with pytest.raises(ConfigError, match="tracking.*urI"):
        validate_experiment({**raw, "tracking": {"urI": "local"}})
    with pytest.raises(ConfigError, match="tracking.uri.*sqlite:///PATH"):  # refused when read, not after the study
        validate_experiment({**raw, "tracking": {"uri": "runs/mlflow.db"}})
    assert "sqlite:///PATH" in run("classifier", "train", "--track", "mlflow.db", code=2).output
    assert resolve_uri("local", tmp_path) == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
