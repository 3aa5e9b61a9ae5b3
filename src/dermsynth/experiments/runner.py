"""Run an experiment: stages, then every grid cell exactly once, locally or on Ray.

Every run's record is written atomically under ``OUT/runs/<run_id>.json``; a re-run skips
finished runs, so ``kill -9`` at any moment followed by ``run`` finishes each cell exactly
once. A failing cell is recorded as ``<run_id>.failed.json`` (with its error) and does not
stop the others; it is retried on the next ``run``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dermsynth import files
from dermsynth.data.leakage import PROVENANCE_FILE, assert_clean, audit_store, store_account
from dermsynth.data.splits import load_splits
from dermsynth.errors import ConfigError, DermsynthError
from dermsynth.experiments.cleaning_stage import cleaning_tasks
from dermsynth.experiments.executors import EXECUTORS, cell_key, default_workers, run_cells
from dermsynth.experiments.filter_stage import filter_tasks
from dermsynth.experiments.graph import Task, run_graph, task_log_path
from dermsynth.experiments.plan import planned_task_minutes
from dermsynth.experiments.results import load_records, needs_rerun, runs_dir
from dermsynth.experiments.sequential_state import with_added_seeds
from dermsynth.experiments.slurm_driver import slurm_jobs
from dermsynth.experiments.slurm_queue import check_request
from dermsynth.experiments.slurm_spec import SlurmSpec
from dermsynth.experiments.spec import ExperimentSpec, cells
from dermsynth.experiments.stages import preflight, recognisability_stage
from dermsynth.experiments.study_path import ANCHOR_KEY, same_config, study_anchor
from dermsynth.experiments.synthetic_stage import store_for, subset_key, synthetic_tasks
from dermsynth.experiments.task_payloads import AuditPayload, RecognisabilityPayload
from dermsynth.train.run import pin_inputs
from dermsynth.train.spec import RunSpec

log = logging.getLogger(__name__)


def resolve_runs(spec: ExperimentSpec, out: Path, last_look: bool = False) -> list[RunSpec]:
    """The grid's cells, with the experiment's own store filled in where a generator makes it, and
    the seeds a sequential study's looks added (``last_look``: all it may add, for the stages)."""
    runs = with_added_seeds(cells(spec), spec.seed_list(), out, last_look)
    gen = spec.generator
    if gen is not None:
        anchor = study_anchor(out)  # the store's path when the study first ran: what run ids hash
        runs = [r.model_copy(update=_store_fields(gen, Path(out), anchor, r)) if r.synthetic_per_real > 0 else r
                for r in runs]
    return runs


def _store_fields(gen, out: Path, anchor: Path, run: RunSpec) -> dict:
    """The run's store where it is now and, when the study folder has moved, where it was."""
    now = str(store_for(gen, out, run.generator_finetune, subset_key(gen, run)))
    first = str(store_for(gen, anchor, run.generator_finetune, subset_key(gen, run)))
    return {"synthetic_store": now, "synthetic_store_id": first if first != now else None}


def pin_runs(runs: list[RunSpec]) -> list[RunSpec]:
    """Each run with the digests of its split and store filled in (they are part of its id)."""
    splits = load_splits(r.split_spec() for r in runs)
    digests: dict = {}
    return [pin_inputs(r, splits[r.split_spec()], digests) for r in runs]


def planned_runs(spec: ExperimentSpec, out: str | Path) -> list[RunSpec]:
    """The runs as ``run`` would execute them now (ids include the current data and store)."""
    return pin_runs(resolve_runs(spec, Path(out)))


def claim_output(spec: ExperimentSpec, out: Path, force: bool = False) -> None:
    """Refuse a results folder written by a different config (recorded by :func:`record_claim`)."""
    marker = out / "experiment.json"
    if marker.exists():
        old = files.read_json(marker)
        if not same_config(old, spec) and not force:
            raise ConfigError(f"{out} holds results of another config ({old['name']}, digest {old['digest']}); "
                              "use another --out, or --force to add these runs beside them")


def record_claim(spec: ExperimentSpec, out: Path) -> None:
    """Mark the folder as this config's, once its stages ran (a refused run leaves the old mark)."""
    files.write_json(out / "experiment.json", {"name": spec.name, "digest": spec.digest(), "spec": spec.model_dump(),
                                           ANCHOR_KEY: str(study_anchor(out))})


def stage_tasks(spec: ExperimentSpec, runs: list[RunSpec], out: Path) -> list[Task]:
    """Everything before the classifier cells as tasks: fine-tunes, generation per class, the
    recognisability check and the synthetic filter of each store and the leakage audit, each
    after what it needs."""
    tasks, stores = synthetic_tasks(spec, runs, out)
    if spec.recognisability and spec.generator is not None:
        for i, (store, deps) in enumerate(sorted(stores.items())):
            folder = out / "analysis" / ("recognisability" if len(stores) == 1 else
                                         f"recognisability-{Path(store).name.removeprefix('synthetic-')}")
            mine = [r for r in runs if r.synthetic_store == store]
            tasks.append(Task(f"recognisability/{i}", "recognisability", task_recognisability,
                              RecognisabilityPayload(runs=mine, store=store, folder=str(folder)), after=deps, gpus=1))
    tasks += filter_tasks(runs, stores)
    if spec.audit_leakage:
        tasks.append(Task("audit", "audit", task_audit, AuditPayload(runs=runs, folder=str(out / "analysis")),
                          after=[t.name for t in tasks]))
    return tasks


def task_recognisability(payload: RecognisabilityPayload) -> str | None:
    done = recognisability_stage(payload.runs, payload.store, Path(payload.folder))
    return None if done is None else str(done)


def task_audit(payload: AuditPayload) -> bool:
    accounts = audit_runs(payload.runs)
    if payload.folder and accounts:
        files.write_json(Path(payload.folder) / PROVENANCE_FILE, accounts)
    return True


def audit_runs(runs: list[RunSpec]) -> list[dict]:
    """Audit every (split, store) pair the experiment uses; raise LeakageError on any violation.
    Returns each store's provenance account (see :func:`dermsynth.data.leakage.store_account`)."""
    splits = load_splits(r.split_spec() for r in runs)
    pairs = {(r.split_spec(), r.synthetic_store if r.synthetic_per_real else None) for r in runs}
    accounts = []
    for split_spec, store in sorted(pairs, key=str):
        assert_clean(audit_store(splits[split_spec], store))
        if store is not None:
            accounts.append(store_account(splits[split_spec], store))
    return accounts


def prepare_stages(spec: ExperimentSpec, out: str | Path, executor: str = "local", address: str | None = None,
                   workers: int = 1) -> list[RunSpec]:
    """Preflight and every stage before the cells (cached), for tools that reuse the stores."""
    out = Path(out)
    runs = resolve_runs(spec, out, last_look=True)
    run_graph(cleaning_tasks(runs, out), out / "tasks", executor, address, workers)  # every split needs its groups
    preflight(spec, runs)
    run_graph(stage_tasks(spec, runs, out), out / "tasks", executor, address, workers)
    return runs


@dataclass(frozen=True)
class ExperimentResult:
    """What one ``run`` did: the planned runs, those that ran now, those that failed (each has
    its ``*.failed.json``), the training wall time and every stage's (OUT/stage_timings.json)."""

    runs: int
    ran: int
    failed: int
    seconds: float
    timings: dict[str, float]


def run_experiment(spec: ExperimentSpec, out: str | Path, executor: str = "local", workers: int | None = None,
                   address: str | None = None, force: bool = False) -> ExperimentResult:
    """Run the stages and every pending cell; returns counts of done / failed runs."""
    if executor not in EXECUTORS:  # checked before any stage runs
        raise ConfigError(f"executor={executor!r}; choose one of {', '.join(EXECUTORS)}")
    out = Path(out)
    claim_output(spec, out, force)
    slurm = slurm_request(spec, out) if executor == "slurm" else None
    prepared = resolve_runs(spec, out, last_look=True)  # = the runs, except in a sequential study
    timings: dict[str, float] = {}
    # Cleaning first, as its own step of the graph: every later stage and cell splits by its groups.
    cleaning = cleaning_tasks(prepared, out)
    run_graph(cleaning, out / "tasks", executor, address, workers or 1, slurm)
    t0 = time.perf_counter()
    preflight(spec, prepared)
    timings["preflight"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    tasks = stage_tasks(spec, prepared, out)
    run_graph(tasks, out / "tasks", executor, address, workers or 1, slurm)
    timings["stages"] = time.perf_counter() - t1
    record_claim(spec, out)
    runs = pin_runs(resolve_runs(spec, out))
    rdir = runs_dir(out)
    rdir.mkdir(parents=True, exist_ok=True)
    pending = [r for r in runs if not (rdir / f"{r.run_id()}.json").exists()
               or needs_rerun(rdir / f"{r.run_id()}.json", r.content_digest)]
    log.info("%s: %d runs, %d done, %d to run", spec.name, len(runs), len(runs) - len(pending), len(pending))
    workers = workers or default_workers(pending)
    runs_start = time.perf_counter()
    failures = run_cells(pending, rdir, executor, workers, address, slurm)
    for rid, err in failures.items():
        log.error("run %s failed: %s", rid, err)
    timings["training_runs"] = time.perf_counter() - runs_start
    timings.update(task_seconds(out / "tasks", [t.name for t in cleaning + tasks]))
    record_timings(out, timings)
    return ExperimentResult(runs=len(runs), ran=len(pending), failed=len(failures),
                            seconds=timings["training_runs"], timings=timings)


def slurm_request(spec: ExperimentSpec, out: Path) -> SlurmSpec:
    """The config's [slurm] table, checked against the cluster and the plan before anything is submitted."""
    slurm = spec.slurm or SlurmSpec()
    out.mkdir(parents=True, exist_ok=True)
    try:
        planned = planned_task_minutes(spec, "a100" if slurm.gpus_per_task else "cpu")
    except (DermsynthError, KeyError) as exc:  # a plan needs class sizes some datasets give only at run time
        log.info("no planned task times to check the Slurm time limit against: %s", exc)
        planned = {}
    check_request(slurm, out, planned)
    return slurm


def experiment_status(spec: ExperimentSpec, out: str | Path) -> pd.DataFrame:
    """done / running / failed / pending per cell, with its Slurm job id and state where the Slurm
    executor submitted it (a cell running on another node has no pid this machine can see)."""
    out = Path(out)
    rdir = runs_dir(out)
    rows = []
    jobs = {j["task"]: j for j in slurm_jobs(out)}
    for run in planned_runs(spec, out):
        rid = run.run_id()
        job = jobs.get(cell_key(rid), {})
        if (rdir / f"{rid}.json").exists():
            state = "done"
        elif job.get("state") == "RUNNING" or (rdir / f"{rid}.running").exists() and _alive(rdir / f"{rid}.running"):
            state = "running"
        elif (rdir / f"{rid}.failed.json").exists():
            state = "failed"
        else:
            state = "pending"
        slurm = {"slurm_job": job.get("job_id"), "slurm_state": job.get("state")} if jobs else {}
        rows.append({"run_id": rid, "state": state, **{k: getattr(run, k) for k in spec.grid}, "seed": run.seed,
                     **slurm})
    return pd.DataFrame(rows)


def task_seconds(log_dir: Path, names: list[str]) -> dict[str, float]:
    """Seconds per task kind of the tasks run now (from their logs), for cost accounting."""
    out: dict[str, float] = {}
    for name in names:
        path = task_log_path(log_dir, name)
        if path.exists():
            info = files.read_json(path)
            out[info["kind"]] = out.get(info["kind"], 0.0) + info["end"] - info["start"]
    return out


def record_timings(out: Path, timings: dict[str, float]) -> None:
    """Accumulate each stage's measured wall time in OUT/stage_timings.json (cost accounting)."""
    path = out / "stage_timings.json"
    seen = files.read_json(path) if path.exists() else {}
    files.write_json(path, {**seen, **{k: seen.get(k, 0.0) + v for k, v in timings.items()}})


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
