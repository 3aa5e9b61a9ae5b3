"""Leases on a study's tasks, so that any number of processes running one study — two terminals,
two nodes, the tasks of a Slurm job array — split its work instead of each doing all of it.

A task is claimed by creating ``STUDY/leases/<task>.<generation>.lease`` with ``os.link`` from a
file of the holder's own (host, pid, Slurm job, start). ``link`` is atomic on local file systems
and on NFS (v2 onwards: the classic NFS-safe lock, and the reply-lost case is settled by the
temporary file's link count), where ``O_EXCL`` creation was not atomic before NFSv3 and advisory
locks (``flock``/``fcntl``) are not honoured by every server or mount. So exactly one process
wins each generation. The holder touches its lease every ``heartbeat`` seconds. A lease whose
last touch is older than ``timeout`` — measured against the file system's own clock (a probe
file's mtime), never a node's, so clock skew between nodes does not matter — is stale, and the
next generation may be claimed: a holder that died (kill -9, a lost node, a preempted job) loses
its task to the next process. On one host a dead holder's pid is noticed at once. A holder that
finds a higher generation than its own has lost its lease (it stalled past the timeout): it is
told so, and its result is still written atomically, so the worst case is work done twice,
never a corrupt record.

Considered: local file systems (ext4, xfs, btrfs, tmpfs), NFS v3/v4, Lustre and GPFS (POSIX
``link`` and mtimes; both are shared by every node of the cluster). Not considered safe: object
stores mounted as file systems (s3fs, gcsfuse), where ``link`` is missing or not atomic.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LEASES = "leases"
TIMEOUT = 300.0
HEARTBEAT = 30.0


def holder_identity() -> dict:
    """Who holds a lease: host and pid, and the Slurm job when there is one."""
    slurm = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{slurm}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if slurm else os.environ.get("SLURM_JOB_ID")
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": job, "since": time.time(),
            "id": uuid.uuid4().hex}


def safe_name(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in key)


@dataclass
class Lease:
    """A claimed task: kept alive by a heartbeat thread until :meth:`Leases.release`."""

    key: str
    path: Path
    generation: int
    stop: threading.Event = field(default_factory=threading.Event)
    lost: bool = False


class Leases:
    """The leases of one study folder (see the module)."""

    def __init__(self, study: str | Path, timeout: float = TIMEOUT, heartbeat: float = HEARTBEAT):
        self.folder = Path(study) / LEASES
        self.folder.mkdir(parents=True, exist_ok=True)
        self.timeout, self.heartbeat = timeout, heartbeat
        self.me = holder_identity()

    def fs_now(self) -> float:
        """The file system's clock: the mtime of a file touched now."""
        probe = self.folder / ".clock"
        probe.touch()
        return probe.stat().st_mtime

    def generations(self, key: str) -> list[tuple[int, Path]]:
        found = []
        for path in self.folder.glob(f"{safe_name(key)}.*.lease"):
            gen = path.name[len(safe_name(key)) + 1:-len(".lease")]
            if gen.isdigit():
                found.append((int(gen), path))
        return sorted(found)

    def holder(self, key: str) -> dict | None:
        """The live holder of ``key``'s lease (its identity, plus the lease's age), or None."""
        gens = self.generations(key)
        if not gens:
            return None
        path = gens[-1][1]
        try:
            holder, age = json.loads(path.read_text()), self.fs_now() - path.stat().st_mtime
        except (OSError, ValueError):
            return None
        if age > self.timeout or self._dead_here(holder):
            return None
        return {**holder, "age": age}

    def _dead_here(self, holder: dict) -> bool:
        """A holder on this host whose process is gone (no need to wait for the timeout)."""
        if holder.get("host") != self.me["host"] or holder.get("pid") == self.me["pid"]:
            return False
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, KeyError):
            return False
        return False

    def claim(self, key: str) -> Lease | None:
        """The lease of ``key``, or None when a live holder has it (or another process won the race)."""
        gens = self.generations(key)
        if gens and self.holder(key) is not None:
            return None
        generation = gens[-1][0] + 1 if gens else 0
        target = self.folder / f"{safe_name(key)}.{generation}.lease"
        tmp = self.folder / f".{safe_name(key)}.{self.me['id']}.tmp"
        tmp.write_text(json.dumps({**self.me, "task": key, "generation": generation}))
        try:
            os.link(tmp, target)
            won = True
        except FileExistsError:
            won = False
        except OSError:  # NFS: the reply may be lost though the link was made
            won = tmp.stat().st_nlink == 2
        finally:
            tmp.unlink(missing_ok=True)
        if not won:
            return None
        lease = Lease(key, target, generation)
        threading.Thread(target=self._beat, args=(lease,), daemon=True).start()
        return lease

    def _beat(self, lease: Lease) -> None:
        while not lease.stop.wait(self.heartbeat) and self.beat(lease):
            pass

    def beat(self, lease: Lease) -> bool:
        """Touch the lease; False (and ``lease.lost``) when it was removed or taken over after a
        stall — the other holder runs the task too."""
        try:
            os.utime(lease.path)
        except FileNotFoundError:
            lease.lost = True
            return False
        gens = self.generations(lease.key)
        if gens and gens[-1][0] > lease.generation:
            lease.lost = True
            return False
        return True

    def release(self, lease: Lease) -> None:
        """Stop the heartbeat and remove the task's lease: this generation and the stale ones before
        it, never a later one (a process that took the task over after a stall holds that)."""
        lease.stop.set()
        for generation, path in self.generations(lease.key):
            if generation <= lease.generation:
                path.unlink(missing_ok=True)

    def held(self) -> dict[str, dict]:
        """Every live lease of the study by task (for `experiment status`)."""
        keys = {p.name.rsplit(".", 2)[0] for p in self.folder.glob("*.lease")}
        out = {}
        for key in keys:
            gens = self.generations(key)
            if gens:
                try:
                    task = json.loads(gens[-1][1].read_text()).get("task", key)
                except (OSError, ValueError):
                    continue
                holder = self.holder(task)
                if holder is not None:
                    out[task] = holder
        return out
