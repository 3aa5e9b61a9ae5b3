"""Run an experiment: stages, then every grid cell exactly once, locally or on Ray.

Every run's record is written atomically under ``OUT/runs/<run_id>.json``; a re-run skips
finished runs, so ``kill -9`` at any moment followed by ``run`` finishes each cell exactly
once. A failing cell is recorded as ``<run_id>.failed.json`` (with its error) and does not
stop the others; it is retried on the next ``run``.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
from rich.console import Console
from tqdm.auto import tqdm

from dermsynth.errors import ConfigError, DermsynthError
from dermsynth.experiments.spec import ExperimentSpec, cells
from dermsynth.experiments.stages import preflight, prepare_synthetic, recognisability_stage
from dermsynth.train.run import run_training, write_record
from dermsynth.train.spec import RunSpec

console = Console(stderr=True)


def runs_dir(out: Path) -> Path:
    return Path(out) / "runs"


def resolve_runs(spec: ExperimentSpec, out: Path) -> list[RunSpec]:
    runs = cells(spec)
    if spec.generator is not None:
        store = spec.generator.store or str(Path(out) / "synthetic")
        runs = [r.model_copy(update={"synthetic_store": store}) if r.synthetic_per_real > 0 else r for r in runs]
    return runs


def claim_output(spec: ExperimentSpec, out: Path, force: bool = False) -> None:
    """Refuse a results folder written by a different config."""
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "experiment.json"
    if marker.exists():
        old = json.loads(marker.read_text())
        if old["digest"] != spec.digest() and not force:
            raise ConfigError(f"{out} holds results of another config ({old['name']}, digest {old['digest']}); "
                              "use another --out, or --force to add these runs beside them")
    tmp = out / ".experiment.json.tmp"
    tmp.write_text(json.dumps({"name": spec.name, "digest": spec.digest(), "spec": spec.model_dump()}, indent=2))
    tmp.replace(marker)


def _execute(spec_json: str, out: str, threads: int) -> tuple[str, str | None]:
    """Run one cell (in a worker); returns (run_id, error or None)."""
    run = RunSpec.model_validate_json(spec_json)
    if threads:
        run = run.model_copy(update={"threads": threads})
    rid = run.run_id()
    rdir = Path(out)
    running = rdir / f"{rid}.running"
    running.write_text(str(os.getpid()))
    try:
        run_training(run, rdir, progress=False)
        (rdir / f"{rid}.failed.json").unlink(missing_ok=True)
        return rid, None
    except Exception as exc:  # recorded, never fatal for the others
        msg = f"{type(exc).__name__}: {exc}"
        write_record({"run_id": rid, "spec": run.model_dump(), "error": msg,
                      "traceback": traceback.format_exc()}, rdir / f"{rid}.failed.json")
        return rid, msg
    finally:
        running.unlink(missing_ok=True)


def run_experiment(spec: ExperimentSpec, out: str | Path, executor: str = "local", workers: int | None = None,
                   address: str | None = None, force: bool = False, progress: bool = True) -> dict:
    """Run the stages and every pending cell; returns counts of done / failed runs."""
    out = Path(out)
    claim_output(spec, out, force)
    runs = resolve_runs(spec, out)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    preflight(spec, runs)
    timings["preflight"] = time.perf_counter() - t0
    store = prepare_synthetic(spec, runs, out, progress, timings)
    if spec.recognisability and spec.generator is not None and store is not None:
        t1 = time.perf_counter()
        recognisability_stage(runs, store, out, progress)
        timings["recognisability"] = time.perf_counter() - t1
    if spec.audit_leakage:
        from dermsynth.analysis.leakage import audit_runs

        audit_runs(runs)
    rdir = runs_dir(out)
    rdir.mkdir(parents=True, exist_ok=True)
    pending = [r for r in runs if not (rdir / f"{r.run_id()}.json").exists()]
    console.print(f"[bold]{spec.name}[/]: {len(runs)} runs, {len(runs) - len(pending)} done, {len(pending)} to run")
    workers = workers or max(1, min(len(pending), (os.cpu_count() or 1) // 2 or 1))
    failures = {}
    runs_start = time.perf_counter()
    if executor == "ray":
        failures = _run_ray(pending, rdir, workers, address)
    elif executor != "local":
        raise ConfigError(f"executor={executor!r}; choose local or ray")
    elif workers <= 1 or len(pending) <= 1:
        for run in tqdm(pending, desc="runs", disable=not progress):
            rid, err = _execute(run.model_dump_json(), str(rdir), run.threads or 0)
            if err:
                failures[rid] = err
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futs = [pool.submit(_execute, r.model_dump_json(), str(rdir), threads) for r in pending]
            for fut in tqdm(as_completed(futs), total=len(futs), desc="runs", disable=not progress):
                rid, err = fut.result()
                if err:
                    failures[rid] = err
    for rid, err in failures.items():
        console.print(f"[red]run {rid} failed:[/] {err}")
    timings["training_runs"] = time.perf_counter() - runs_start
    return {"runs": len(runs), "ran": len(pending), "failed": len(failures), "seconds": timings["training_runs"],
            "timings": timings}


def _run_ray(pending: list[RunSpec], rdir: Path, workers: int, address: str | None) -> dict:
    try:
        import ray
    except ImportError:
        raise DermsynthError("executor 'ray' needs Ray: pip install 'dermsynth[ray]'") from None
    started = False
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else max(workers, 1), include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)
        started = True
    try:
        import torch

        gpus = 1 if torch.cuda.is_available() else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpus)(_execute)
        refs = [remote.remote(r.model_dump_json(), str(rdir), 1) for r in pending]
        return {rid: err for rid, err in ray.get(refs) if err}
    finally:
        if started:
            ray.shutdown()


def experiment_status(spec: ExperimentSpec, out: str | Path) -> pd.DataFrame:
    """done / running / failed / pending per cell."""
    out = Path(out)
    rdir = runs_dir(out)
    rows = []
    for run in resolve_runs(spec, out):
        rid = run.run_id()
        if (rdir / f"{rid}.json").exists():
            state = "done"
        elif (rdir / f"{rid}.running").exists() and _alive(rdir / f"{rid}.running"):
            state = "running"
        elif (rdir / f"{rid}.failed.json").exists():
            state = "failed"
        else:
            state = "pending"
        rows.append({"run_id": rid, "state": state, **{k: getattr(run, k) for k in spec.grid}, "seed": run.seed})
    return pd.DataFrame(rows)


def eta_seconds(status: pd.DataFrame, out: str | Path, workers: int = 1) -> float | None:
    """Remaining time: mean wall time of finished runs × runs left ÷ workers."""
    done = [r["wall_seconds"] for r in load_records(out)]
    left = int(status["state"].isin(["pending", "running", "failed"]).sum())
    if not done or not left:
        return None
    return float(sum(done) / len(done) * left / max(1, workers))


def _alive(marker: Path) -> bool:
    try:
        os.kill(int(marker.read_text()), 0)
        return True
    except (ValueError, OSError):
        return False


def load_records(out: str | Path) -> list[dict]:
    rdir = runs_dir(Path(out))
    return [json.loads(p.read_text()) for p in sorted(rdir.glob("*.json")) if not p.name.endswith(".failed.json")]


def results_table(out: str | Path) -> pd.DataFrame:
    """One row per finished run: its spec fields and metrics, flattened."""
    rows = []
    for rec in load_records(out):
        m = rec["metrics"]
        row = {"run_id": rec["run_id"], **{k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                                           for k, v in rec["spec"].items()}}
        row.update({k: m[k] for k in ("accuracy", "balanced_accuracy", "top3_accuracy", "n_test")})
        row.update({f"acc_class:{c}": v for c, v in m["per_class_accuracy"].items()})
        row.update({f"acc_group:{g}": v for g, v in m.get("per_skin_group_accuracy", {}).items()})
        row.update({"n_train": rec["n_train"], "n_train_synthetic": rec["n_train_synthetic"],
                    "epochs_run": rec["fit"]["epochs_run"], "wall_seconds": rec["wall_seconds"],
                    "images_per_second": rec["fit"]["images_per_second"]})
        rows.append(row)
    return pd.DataFrame(rows)

