"""Executors: where an experiment's cells run — in this process, a local process pool, Ray, or
Slurm job arrays.

Every executor runs the same function on a cell (:func:`execute_cell`), which writes the
cell's record atomically or a ``*.failed.json`` with its error; so a worker killed
mid-task loses only that task and a re-run finishes every cell exactly once. A cell is run
only under its lease (:mod:`dermsynth.experiments.leases`): other processes on the same study
skip the cells it holds and wait for them at the end, taking over any whose holder dies.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

from dermsynth import files
from dermsynth.errors import ConfigError
from dermsynth.experiments.graph import Task, run_graph
from dermsynth.experiments.leases import Leases
from dermsynth.experiments.slurm_driver import SlurmDriver, SlurmTask
from dermsynth.experiments.slurm_spec import SlurmSpec
from dermsynth.experiments.task_payloads import CellPayload
from dermsynth.progress import progress_bar, progress_bars
from dermsynth.train.run import run_training, write_record
from dermsynth.train.spec import RunSpec

ExecutorName = Literal["local", "ray", "slurm"]
EXECUTORS: tuple[str, ...] = ("local", "ray", "slurm")
POOL_RETRIES = 2  # like Ray's max_retries: a cell whose worker dies is run again this many times
log = logging.getLogger(__name__)


HELD = "held by another process"  # execute_cell's answer for a cell leased elsewhere (not an error)
WAIT_POLL = 2.0  # seconds between looks at the cells other processes hold


def cell_key(rid: str) -> str:
    return f"train/{rid}"


def cell_done(folder: Path, run: RunSpec) -> bool:
    """Recorded, by this process or another, and not to be run again."""
    from dermsynth.experiments.results import needs_rerun

    record = folder / f"{run.run_id()}.json"
    return record.exists() and not needs_rerun(record, run.content_digest)


def execute_cell(spec_json: str, rdir: str, threads: int) -> tuple[str, str | None]:
    """Run one cell (in a worker) under its lease; returns (run_id, error, ``HELD`` or None). Never raises."""
    run = RunSpec.model_validate_json(spec_json)
    if threads:
        run = run.model_copy(update={"threads": threads})
    rid = run.run_id()
    folder = Path(rdir)
    if cell_done(folder, run):
        return rid, None
    leases = Leases(folder.parent)
    lease = leases.claim(cell_key(rid))
    if lease is None:
        return rid, HELD
    if cell_done(folder, run):  # finished by another process between the look and the claim
        leases.release(lease)
        return rid, None
    running = folder / f"{rid}.running"
    running.write_text(str(os.getpid()))
    try:
        with progress_bars(False):  # a cell in a worker: bars of many cells would interleave
            run_training(run, folder)
        (folder / f"{rid}.failed.json").unlink(missing_ok=True)
        return rid, None
    except Exception as exc:  # recorded, never fatal for the others
        msg = f"{type(exc).__name__}: {exc}"
        write_record({"run_id": rid, "spec": run.model_dump(), "error": msg,
                      "traceback": traceback.format_exc()}, folder / f"{rid}.failed.json")
        return rid, msg
    finally:
        running.unlink(missing_ok=True)
        leases.release(lease)


def cell_task(payload: CellPayload) -> tuple[str, str | None]:
    """execute_cell as a graph task (one thread: Ray packs one cell per CPU)."""
    return execute_cell(payload.run.model_dump_json(), payload.rdir, 1)


# A worker's share of memory when the command does not set --workers (a CPU run of resnet18 at
# 224 px with its images cached fits in it: docs/benchmarks.md): never more workers than the free
# memory holds.
WORKER_GIB = 2.0
# A pool's processes take seconds to start (each imports torch and timm: docs/benchmarks.md),
# so by default one is started per this many pending cells, not more.
CELLS_PER_WORKER = 4


def default_workers(pending: list[RunSpec]) -> int:
    """Local training processes when the command does not say how many.

    On a CPU, one single-threaded process per core: a run's intra-op threads scale poorly on the
    small models and batches of CPU studies (a second thread speeds up the quickstart's test_resnet
    step only a little, and even resnet18's falls well short of double), and cells are
    independent, so two one-thread processes train clearly more images per second than one
    two-thread process (docs/benchmarks.md). One per CELLS_PER_WORKER cells at most (a few cells
    run in this process: a pool's start-up would cost more than it saves), and no more than free
    memory holds (WORKER_GIB each). With CUDA, half the cores: the GPU, not the CPU, is what they
    share."""
    import psutil
    import torch

    cores = os.cpu_count() or 1
    if torch.cuda.is_available():
        return max(1, min(len(pending), cores // 2 or 1))
    fits = int(psutil.virtual_memory().available / 2**30 // WORKER_GIB)
    return max(1, min(len(pending) // CELLS_PER_WORKER, cores, fits))


def largest_first(pending: list[RunSpec]) -> list[RunSpec]:
    """Cells ordered by their training images, most first: in a pool the long cells start early, so
    the last cell to finish is a short one rather than a long one running alone."""
    def size(run: RunSpec) -> int:
        return (10**9 if run.use_all_pool else run.n_real) * (1 + run.synthetic_per_real)
    return sorted(pending, key=size, reverse=True)


def run_cells(pending: list[RunSpec], rdir: Path, executor: str = "local", workers: int = 1,
              address: str | None = None, slurm: SlurmSpec | None = None) -> dict[str, str]:
    """Run every pending cell, here or — for cells another process holds — there, waiting for them
    (and taking over any whose holder dies); returns {run_id: error} of the cells that failed."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r}; choose one of {', '.join(EXECUTORS)}")
    since, by_id = time.time(), {r.run_id(): r for r in pending}
    failures = _dispatch(pending, rdir, executor, workers, address, slurm)
    held = [by_id[rid] for rid, err in failures.items() if err == HELD]
    if held:
        for run in held:
            del failures[run.run_id()]
        log.info("%d cell(s) run by other processes on this study: waiting for them", len(held))
        failures.update(wait_for_others(held, rdir, executor, workers, address, since, slurm))
    return failures


def wait_for_others(held: list[RunSpec], rdir: Path, executor: str, workers: int, address: str | None,
                    since: float, slurm: SlurmSpec | None = None) -> dict[str, str]:
    """Until every cell another process holds is recorded, or failed there (a ``failed.json``
    written after ``since``); a cell whose lease goes stale (its holder died) or is released
    unrecorded is run here. Returns the failures."""
    leases, failures, left = Leases(Path(rdir).parent), {}, list(held)
    while left:
        still = []
        for run in left:
            rid, failed = run.run_id(), rdir / f"{run.run_id()}.failed.json"
            if cell_done(rdir, run):
                continue
            if leases.holder(cell_key(rid)) is not None:
                still.append(run)
            elif failed.exists() and failed.stat().st_mtime >= since:
                failures[rid] = files.read_json(failed).get("error", "failed in another process")
            else:  # its holder died, or let it go unrecorded: run it here
                err = _dispatch([run], rdir, executor, workers, address, slurm).get(rid)
                if err == HELD:
                    still.append(run)
                elif err:
                    failures[rid] = err
        left = still
        if left:
            time.sleep(WAIT_POLL)
    return failures


def _dispatch(pending: list[RunSpec], rdir: Path, executor: str, workers: int,
              address: str | None, slurm: SlurmSpec | None = None) -> dict[str, str]:
    """One pass over ``pending`` on the executor: {run_id: error or HELD}."""
    if executor == "ray":
        return _run_ray(pending, rdir, workers, address)
    if executor == "slurm":
        return _run_slurm(pending, rdir, slurm or SlurmSpec())
    failures: dict[str, str] = {}
    if workers <= 1 or len(pending) <= 1:
        for run in progress_bar(pending, desc="runs"):
            rid, err = execute_cell(run.model_dump_json(), str(rdir), run.threads or 0)
            if err:
                failures[rid] = err
        return failures
    threads = max(1, (os.cpu_count() or 1) // workers)
    todo, bar = largest_first(pending), progress_bar(total=len(pending), desc="runs")
    for attempt in range(1 + POOL_RETRIES):
        lost: list[RunSpec] = []
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futs = {pool.submit(execute_cell, r.model_dump_json(), str(rdir), threads): r for r in todo}
            for fut in as_completed(futs):
                try:
                    rid, err = fut.result()
                except BrokenProcessPool:  # a worker died (killed, out of memory): its cells run again
                    lost.append(futs[fut])
                    continue
                bar.update(1)
                if err:
                    failures[rid] = err
        if not lost:
            break
        if attempt < POOL_RETRIES:
            log.warning("a pool worker died; %d unfinished cell(s) run again (attempt %d of %d)", len(lost),
                        attempt + 2, 1 + POOL_RETRIES)
            todo = lost
    else:
        for run in lost:
            failures[run.run_id()] = f"worker process died {1 + POOL_RETRIES} times running this cell"
    bar.close()
    return failures


def _run_slurm(pending: list[RunSpec], rdir: Path, slurm: SlurmSpec) -> dict[str, str]:
    """Every cell an array task with ``cpus_per_task`` threads (and its GPUs), largest first."""
    def arguments(run: RunSpec):
        return lambda _values: (run.model_dump_json(), str(rdir), slurm.cpus_per_task)

    todo = largest_first(pending)
    outcomes = SlurmDriver(Path(rdir).parent, slurm).run(
        [SlurmTask(cell_key(r.run_id()), execute_cell, arguments(r), gpus=True) for r in todo])
    failures = {}
    for run in todo:
        status, value = outcomes[cell_key(run.run_id())]
        err = value[1] if status == "ok" else value
        if err:
            failures[run.run_id()] = err
    return failures


def _run_ray(pending: list[RunSpec], rdir: Path, workers: int, address: str | None) -> dict[str, str]:
    """Every cell a Ray task (one GPU each where CUDA is present; retried on a lost worker)."""
    tasks = [Task(f"train/{r.run_id()}", "train", cell_task, CellPayload(run=r, rdir=str(rdir)), gpus=1)
             for r in pending]
    results = run_graph(tasks, Path(rdir).parent / "tasks", "ray", address, workers)
    return {rid: err for rid, err in results.values() if err}
