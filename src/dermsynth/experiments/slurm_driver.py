"""The Slurm executor's driver: tasks out as job arrays through submitit, a waiting loop on the
queue, results read back from the study folder.

The design (docs/guide/06-slurm.md): one driver process — on the login node, or itself an
sbatch job — submits every task whose dependencies are done as one job array (those that use a
GPU apart from those that do not) and waits, looking at ``squeue`` every ``poll_seconds``; a
task's outcome is the file its job writes under ``STUDY/slurm/results``. A task that leaves the
queue without writing one (``scancel``, preemption without requeue, out of memory, a lost node)
is submitted again, up to ``max_resubmits`` times. The job ids go to ``STUDY/slurm/jobs.json``,
so a driver that exits (or is killed) can be started again with the same command: it re-attaches
to the jobs still queued or running instead of submitting them twice, and takes the results of
those that finished meanwhile. Cells run under their leases (leases.py) as on every executor, so
even two drivers on one study train each cell once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermsynth import files
from dermsynth.errors import ConfigError
from dermsynth.experiments.slurm_queue import queue_states
from dermsynth.experiments.slurm_spec import SlurmSpec

log = logging.getLogger(__name__)

OK, ERROR = "ok", "error"


@dataclass
class SlurmTask:
    """One array task: ``fn(*args(values))``, where ``values`` holds the results of ``deps`` once they
    are done. A task with a ``digest`` (a stage) whose earlier result carries the same digest is
    not submitted again: its work is cached, and a queue round trip costs minutes on a busy cluster."""

    key: str
    fn: Callable[..., Any]
    args: Callable[[dict[str, Any]], tuple]
    deps: list[str] = field(default_factory=list)
    gpus: bool = False
    digest: str | None = None


def safe_name(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)


def slurm_worker(result_path: str, key: str, digest: str | None, fn: Callable[..., Any], *args: Any) -> str:
    """What each array task runs: the task, then its outcome written atomically where the driver
    looks (an exception is an outcome too, with its traceback; only a killed job writes nothing)."""
    try:
        outcome: dict[str, Any] = {"status": OK, "value": fn(*args)}
        pickle.dumps(outcome["value"])
    except Exception as exc:  # reported to the driver, which decides (an unpicklable value too)
        outcome = {"status": ERROR, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job_id = f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if job else os.environ.get("SLURM_JOB_ID")
    outcome.update(key=key, digest=digest, job_id=job_id, host=socket.gethostname(), end=time.time())
    files.write_bytes(result_path, pickle.dumps(outcome))
    return outcome["status"]


class SlurmDriver:
    """Submits, waits, resubmits and re-attaches for one study folder."""

    def __init__(self, study: Path, slurm: SlurmSpec):
        self.study, self.slurm = Path(study), slurm
        self.folder = self.study / "slurm"
        self.logs, self.results = self.folder / "logs", self.folder / "results"
        self.jobs_path = self.folder / "jobs.json"
        self.attempts: dict[str, int] = {}

    def result_path(self, key: str) -> Path:
        return self.results / f"{safe_name(key)}.pkl"

    def read_result(self, key: str) -> dict | None:
        path = self.result_path(key)
        try:
            return pickle.loads(path.read_bytes())
        except (OSError, EOFError, pickle.UnpicklingError):
            return None

    def jobs(self) -> dict[str, dict]:
        return files.read_json(self.jobs_path) if self.jobs_path.exists() else {}

    def _record(self, entries: dict[str, dict]) -> None:
        """Add job ids to jobs.json (read again first: another driver may have written its own)."""
        files.write_json(self.jobs_path, {**self.jobs(), **entries})

    def run(self, tasks: list[SlurmTask]) -> dict[str, tuple[str, Any]]:
        """Every task to an outcome: {key: ("ok", value) or ("error", message)}."""
        outcomes: dict[str, tuple[str, Any]] = {}
        flight: dict[str, str] = {}  # key → job id, in the queue now
        gone: dict[str, float] = {}  # key → when it was first seen out of the queue
        queue, jobs = self._queue_now(), self.jobs()
        digests = {t.key: t.digest for t in tasks}
        for t in tasks:
            prior = self.read_result(t.key) if t.digest is not None else None
            entry = jobs.get(t.key, {})
            if prior is not None and prior.get("digest") == t.digest and prior["status"] == OK:
                outcomes[t.key] = (OK, prior["value"])
            elif entry.get("job_id") in queue and entry.get("digest") == t.digest:  # the same task, still there
                flight[t.key] = entry["job_id"]
                self.attempts[t.key] = int(entry.get("attempts", 1))
        if flight:
            log.info("re-attached to %d Slurm task(s) still queued or running", len(flight))
        while True:
            self._skip_after_failures(tasks, outcomes)
            if len(outcomes) == len(tasks):
                return outcomes
            values = {k: v for k, (status, v) in outcomes.items() if status == OK}
            ready = [t for t in tasks if t.key not in outcomes and t.key not in flight
                     and all(d in values for d in t.deps)]
            flight.update(self.submit(ready, values))
            if not flight:
                waiting = [t.key for t in tasks if t.key not in outcomes]
                raise ValueError(f"Slurm tasks {waiting[:3]} wait for tasks that are not in the graph")
            time.sleep(self.slurm.poll_seconds)
            queue = queue_states()
            if queue is not None:
                self._look(queue, flight, gone, outcomes, digests)
        return outcomes

    def _skip_after_failures(self, tasks: list[SlurmTask], outcomes: dict[str, tuple[str, Any]]) -> None:
        for t in tasks:
            failed = [d for d in t.deps if outcomes.get(d, (OK,))[0] == ERROR]
            if t.key not in outcomes and failed:
                outcomes[t.key] = (ERROR, f"not run: {failed[0]} failed")

    def _queue_now(self) -> dict[str, str]:
        """The queue as it is, asked again while the controller does not answer: taking a failed
        look for an empty queue would submit every tracked job a second time."""
        for _ in range(20):
            queue = queue_states()
            if queue is not None:
                return queue
            time.sleep(self.slurm.poll_seconds)
        raise ConfigError("squeue has not answered for 20 tries: is slurmctld up? Nothing was submitted")

    def _look(self, queue: dict[str, str], flight: dict[str, str], gone: dict[str, float],
              outcomes: dict[str, tuple[str, Any]], digests: dict[str, str | None]) -> None:
        for key, job in list(flight.items()):
            result = self.read_result(key)
            if result is not None and (result.get("job_id") != job or result.get("digest") != digests[key]):
                result = None  # another job's (an earlier submission of this task): not this one's outcome
            if result is not None:
                outcomes[key] = (OK, result["value"]) if result["status"] == OK else (
                    ERROR, f"{result['error']} (Slurm job {job}; log {self.log_of(job)})")
                del flight[key]
            elif job in queue:
                gone.pop(key, None)
            else:
                self._maybe_lost(key, job, gone, flight, outcomes)

    def _maybe_lost(self, key: str, job: str, gone: dict[str, float], flight: dict[str, str],
                    outcomes: dict[str, tuple[str, Any]]) -> None:
        """A job out of the queue without a result is lost only after ``lost_after_seconds``: on NFS
        a file renamed on a node may stay invisible here for a while (attribute caching)."""
        first = gone.setdefault(key, time.time())
        if self.results.exists():
            os.listdir(self.results)  # a fresh look at the folder, not a cached one
        mine = (self.read_result(key) or {}).get("job_id") == job  # _look takes it at the next look
        if mine or time.time() - first < self.slurm.lost_after_seconds:
            return
        del flight[key]
        gone.pop(key)
        if self.attempts.get(key, 1) > self.slurm.max_resubmits:
            outcomes[key] = (ERROR, f"Slurm job {job} ended without a result {self.attempts.get(key, 1)} times "
                                    "(cancelled, preempted, out of memory or time, a node lost); "
                                    f"log {self.log_of(job)}")
        else:
            log.warning("Slurm job %s (%s) ended without a result: submitting it again", job, key)

    def log_of(self, job: str) -> Path:
        return self.logs / f"{job}_0_log.err"

    def submit(self, ready: list[SlurmTask], values: dict[str, Any]) -> dict[str, str]:
        """``ready`` as job arrays (GPU tasks and the others apart); returns {key: job id}."""
        submitted: dict[str, str] = {}
        for gpus in (True, False):
            group = [t for t in ready if t.gpus == gpus]
            if group:
                ids = self._submit_array(group, values, gpus)
                now = time.time()
                self._record({t.key: {"job_id": ids[t.key], "attempts": self.attempts[t.key], "submitted": now,
                                      "digest": t.digest, "log": str(self.log_of(ids[t.key]))} for t in group})
                submitted.update(ids)
        return submitted

    def _submit_array(self, group: list[SlurmTask], values: dict[str, Any], gpus: bool) -> dict[str, str]:
        import submitit

        self.results.mkdir(parents=True, exist_ok=True)
        executor = submitit.SlurmExecutor(folder=self.logs, python=self.slurm.python)
        executor.update_parameters(**self.slurm.submitit_parameters(gpus, f"dermsynth-{self.study.name}"))
        try:
            with executor.batch():
                jobs = [executor.submit(slurm_worker, str(self.result_path(t.key)), t.key, t.digest, t.fn,
                                        *t.args(values)) for t in group]
        except Exception as exc:  # sbatch refused the array: its message says why (a limit, an account)
            raise ConfigError(f"sbatch refused {len(group)} task(s) of {self.study}: {exc}") from None
        for t in group:
            self.attempts[t.key] = self.attempts.get(t.key, 0) + 1
        log.info("submitted %d task(s) as Slurm job %s (%s)", len(group), jobs[0].job_id.split("_")[0],
                 f"{self.slurm.gpus_per_task} GPU(s) each" if gpus and self.slurm.gpus_per_task else "no GPU")
        return {t.key: job.job_id for t, job in zip(group, jobs, strict=True)}


def stage_digest(name: str, kind: str, fn: Callable, payload_json: str, inputs: dict[str, str]) -> str:
    """What a stage task's cached result stands for: its function, payload and inputs."""
    text = "|".join([name, kind, f"{fn.__module__}.{fn.__qualname__}", payload_json, repr(sorted(inputs.items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def slurm_jobs(study: Path) -> list[dict]:
    """Each task the Slurm executor submitted for this study: job id, state (the queue's while it
    is there, else what its result says), submissions, log."""
    driver = SlurmDriver(study, SlurmSpec())
    jobs = driver.jobs()
    if not jobs:
        return []
    queue = queue_states() or {}
    rows = []
    for key, entry in sorted(jobs.items()):
        result = driver.read_result(key)
        state = queue.get(entry["job_id"]) or ("COMPLETED" if result and result["status"] == OK else
                                               "FAILED" if result else "ENDED WITHOUT RESULT")
        rows.append({"task": key, "job_id": entry["job_id"], "state": state, "attempts": entry.get("attempts", 1),
                     "log": entry.get("log")})
    return rows
