"""A study as a graph of tasks — fine-tunes, generation, checks, classifier cells — run by
the chosen executor: in this process (in order), as Ray tasks with declared resources, or as
Slurm job arrays (slurm_driver.py: each task submitted once its dependencies are done).

Dependencies are explicit: a class's generation waits for that class's fine-tune only, not
for all of them; the classifier cells wait for the audit of their store. Each task writes
``OUT/tasks/<name>.json`` (kind, host, pid, start, end) as it finishes, so the task list of a
run shows where every stage ran. In this process each task runs under its lease
(:mod:`dermsynth.experiments.leases`): two processes on one study never run a stage at once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dermsynth import files
from dermsynth.errors import ConfigError, DermsynthError
from dermsynth.experiments.leases import Lease, Leases
from dermsynth.experiments.slurm_driver import SlurmDriver, SlurmTask, stage_digest
from dermsynth.experiments.slurm_spec import SlurmSpec
from dermsynth.experiments.task_contract import check_call, check_result
from dermsynth.progress import progress_bars

log = logging.getLogger(__name__)


@dataclass
class Task:
    """``fn(payload, **inputs)``, where ``inputs`` names each parameter fed by another task's
    result (parameter → task name) and ``after`` lists tasks that only have to finish first.
    ``fn`` is module-level so Ray can ship it; its annotations are its contract, checked at the
    boundary (task_contract.py)."""

    name: str
    kind: str  # clean | train-generator | finetune | generate | recognisability | filter | audit | train
    fn: Callable[..., Any]
    payload: BaseModel
    inputs: dict[str, str] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)
    gpus: float = 0.0  # Ray: GPUs per task when CUDA is present
    memory_gb: float | None = None

    @property
    def deps(self) -> list[str]:
        """Every task this one waits for: its inputs' tasks first (in parameter order), then ``after``."""
        return list(dict.fromkeys([*self.inputs.values(), *self.after]))


def task_log_path(log_dir: str | Path, name: str) -> Path:
    return Path(log_dir) / ("".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) + ".json")


def run_logged(log_dir: str, name: str, kind: str, fn: Callable, payload: BaseModel, inputs: dict[str, str],
               *dep_results: Any) -> Any:
    """Run one task and record where and when it ran (OUT/tasks/<name>.json).

    ``dep_results`` are the results of ``Task.deps`` in order (so Ray waits for every one); the
    first ones, of ``inputs``' tasks, are passed by parameter name after the contract check."""
    sources = list(dict.fromkeys(inputs.values()))  # Task.deps begins with these, each once
    values = {param: dep_results[sources.index(task)] for param, task in inputs.items()}
    check_call(name, fn, payload, inputs, values)
    start = time.time()
    with progress_bars(False):  # a stage task: run by a worker, or one of many in this process
        result = check_result(name, fn, fn(payload, **values))
    files.write_json(task_log_path(log_dir, name), {"name": name, "kind": kind, "host": socket.gethostname(),
                                                    "pid": os.getpid(), "start": start, "end": time.time()})
    return result


def check_order(tasks: list[Task]) -> None:
    seen: set[str] = set()
    for t in tasks:
        missing = [d for d in t.deps if d not in seen]
        if missing:
            raise ValueError(f"task {t.name} depends on {missing}, not scheduled before it")
        seen.add(t.name)


def run_graph(tasks: list[Task], log_dir: Path, executor: str = "local", address: str | None = None,
              workers: int = 1, slurm: SlurmSpec | None = None) -> dict[str, Any]:
    """Run every task after its dependencies; returns {name: result}. Tasks come in dependency order."""
    check_order(tasks)
    log_dir.mkdir(parents=True, exist_ok=True)
    if executor == "ray":
        return _run_ray(tasks, log_dir, address, workers)
    if executor == "slurm":
        return _run_slurm(tasks, log_dir, slurm or SlurmSpec())
    if executor != "local":
        raise ConfigError(f"executor={executor!r}; choose local, ray or slurm")
    results: dict[str, Any] = {}
    leases = Leases(log_dir.parent)
    for t in tasks:
        lease = claim_when_free(leases, f"stage/{t.name}")
        try:
            results[t.name] = run_logged(str(log_dir), t.name, t.kind, t.fn, t.payload, t.inputs,
                                         *(results[d] for d in t.deps))
        finally:
            leases.release(lease)
    return results


def claim_when_free(leases: Leases, key: str, poll: float = 2.0) -> Lease:
    """The task's lease, once no live process holds it. Another process on the same study running
    this stage is waited for; its work is then cached, so running the task here returns at once
    with the result this process needs."""
    told = False
    while (lease := leases.claim(key)) is None:
        if not told:
            holder = leases.holder(key) or {}
            log.info("waiting for %s, run by %s (pid %s) on this study", key, holder.get("host"), holder.get("pid"))
            told = True
        time.sleep(poll)
    return lease


class StageFailed(DermsynthError):
    """A stage task failed in a Slurm job (its message names the job and its log): the command
    says so and exits, as a stage's own error does on the other executors."""


def _run_slurm(tasks: list[Task], log_dir: Path, slurm: SlurmSpec) -> dict[str, Any]:
    """Every task a Slurm array task, submitted once the tasks it needs are done."""
    if not tasks:
        return {}

    def arguments(t: Task) -> Any:
        return lambda values: (str(log_dir), t.name, t.kind, t.fn, t.payload, t.inputs,
                               *(values[f"stage/{d}"] for d in t.deps))

    items = [SlurmTask(f"stage/{t.name}", run_logged, arguments(t), [f"stage/{d}" for d in t.deps], t.gpus > 0,
                       stage_digest(t.name, t.kind, t.fn, t.payload.model_dump_json(), t.inputs)) for t in tasks]
    outcomes = SlurmDriver(log_dir.parent, slurm).run(items)
    failed = [f"{t.name}: {outcomes[f'stage/{t.name}'][1]}" for t in tasks if outcomes[f"stage/{t.name}"][0] != "ok"]
    if failed:
        raise StageFailed(f"{len(failed)} stage task(s) failed on Slurm — " + "; ".join(failed[:3]))
    return {t.name: outcomes[f"stage/{t.name}"][1] for t in tasks}


def _run_ray(tasks: list[Task], log_dir: Path, address: str | None, workers: int) -> dict[str, Any]:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs Ray: pip install 'dermsynth[ray]'") from None
    import torch

    started = False
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else max(workers, 1), include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)
        started = True
    try:
        cuda = torch.cuda.is_available()
        refs: dict[str, Any] = {}
        for t in tasks:
            options: dict[str, Any] = {"num_cpus": 1, "num_gpus": t.gpus if cuda else 0, "max_retries": 2}
            if t.memory_gb:
                options["memory"] = int(t.memory_gb * 2**30)
            remote = ray.remote(run_logged).options(**options)
            refs[t.name] = remote.remote(str(log_dir), t.name, t.kind, t.fn, t.payload, t.inputs,
                                         *(refs[d] for d in t.deps))
        return dict(zip(refs, ray.get(list(refs.values())), strict=True))
    finally:
        if started:
            ray.shutdown()
