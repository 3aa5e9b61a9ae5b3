"""What the Slurm executor asks the cluster: the queue's states, its partitions and nodes, and
the checks a request passes before anything is submitted.

Job states are read from ``squeue`` (every array task listed on its own with ``-r``), not from
``sacct``: many clusters, and any without slurmdbd, keep no accounting, and there ``sacct`` and
submitit's own state lookup answer nothing useful. A task that has left the queue is judged by
what it wrote (its result file), never by an accounting record.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
from pathlib import Path

from dermsynth.errors import ConfigError
from dermsynth.experiments.slurm_spec import SlurmSpec

# File systems a folder on one machine only lives on: a study there cannot be seen from other nodes.
NODE_LOCAL_FS = {"tmpfs", "ramfs", "overlay", "devtmpfs", "zfs-local"}
SHARED_FS = {"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "fuse.sshfs", "cifs", "smb3",
             "panfs", "wekafs", "fuse.gcsfuse"}


def _slurm(*args: str) -> str:
    """A Slurm command's output; a ConfigError naming the command when it fails."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ConfigError(f"executor 'slurm' needs Slurm's commands on PATH ({args[0]} not found): run on a "
                          "cluster's login node, or choose executor 'local' or 'ray'") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{' '.join(args)} did not answer in 60 s: is slurmctld up?") from None
    if proc.returncode != 0:
        raise ConfigError(f"{' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def queue_states() -> dict[str, str] | None:
    """{job id: state} of this user's jobs in the queue, each array task as ``JOB_TASK``; None when
    the controller cannot be asked right now (a transient failure is not "every job gone")."""
    try:
        out = _slurm("squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T")
    except ConfigError:
        return None
    states = {}
    for line in out.splitlines():
        job, _, state = line.strip().partition("|")
        if job:
            states[job] = state
    return states


def partitions() -> tuple[dict[str, int | None], str | None]:
    """{partition: its time limit in minutes (None: unlimited)}, and the default partition (sinfo's '*')."""
    limits: dict[str, int | None] = {}
    default = None
    for line in _slurm("sinfo", "-h", "-o", "%P|%l").splitlines():
        name, _, limit = line.strip().partition("|")
        if name:
            limits[name.rstrip("*")] = slurm_minutes(limit)
            default = name.rstrip("*") if name.endswith("*") else default
    return limits, default


def slurm_minutes(limit: str) -> int | None:
    """Minutes of a Slurm time limit (``infinite``, ``MM``, ``HH:MM:SS``, ``D-HH:MM:SS``)."""
    if limit in ("infinite", "UNLIMITED", "n/a", ""):
        return None
    days, _, clock = limit.rpartition("-") if "-" in limit else ("0", "", limit)
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0
    else:
        hours, minutes, seconds = ([0] * (3 - len(parts)) + parts)[-3:]
    return int(days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def cluster_nodes() -> list[str]:
    return sorted({n.strip() for n in _slurm("sinfo", "-h", "-N", "-o", "%N").split() if n.strip()})


def filesystem_type(path: Path) -> str | None:
    """The type of the file system ``path`` is on (from /proc/mounts), or None where unknown."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target, best = os.path.realpath(path), (None, -1)
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3:
            point = fields[1]
            if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > best[1]:
                best = (fields[2], len(point))
    return best[0]


def shared_folder_problem(study: Path, nodes: list[str], fs_type: str | None) -> str | None:
    """Why ``study`` cannot be the study folder of tasks on ``nodes``, or None: a folder on a
    node-local file system (tmpfs, overlay) when any node is another machine than this one."""
    here = {socket.gethostname(), socket.gethostname().split(".")[0]}
    elsewhere = [n for n in nodes if n not in here]
    if not elsewhere or fs_type is None or fs_type in SHARED_FS:
        return None
    if fs_type in NODE_LOCAL_FS:
        return (f"study folder {study} is on {fs_type}, which only this machine sees, but tasks may run on "
                f"{', '.join(elsewhere[:3])}{' …' if len(elsewhere) > 3 else ''}: put the study on a shared "
                "file system (your home or project folder on NFS, Lustre or GPFS)")
    return None


def check_request(slurm: SlurmSpec, study: Path, planned_minutes: dict[str, float] | None = None) -> None:
    """Refuse, before any submission, what would fail later on the cluster: no sbatch, an unknown
    partition, a time limit beyond the partition's or below a task's planned time, and a study
    folder the nodes cannot see."""
    if shutil.which("sbatch") is None:
        raise ConfigError("executor 'slurm': sbatch not found on PATH. Run `experiment run` on the cluster's "
                          "login node (or in an sbatch job), or choose executor 'local' or 'ray'")
    limits, default = partitions()
    if slurm.partition is not None and slurm.partition not in limits:
        raise ConfigError(f"[slurm] partition {slurm.partition!r} does not exist on this cluster; its partitions "
                          f"are {', '.join(sorted(limits)) or 'none'} (sinfo)")
    name = slurm.partition or default
    most = limits.get(name) if name else None
    if most is not None and slurm.time_minutes > most:
        raise ConfigError(f"[slurm] time_minutes = {slurm.time_minutes} is longer than partition {name!r} allows "
                          f"({most} min): lower it, or choose another partition")
    for stage, minutes in (planned_minutes or {}).items():
        if minutes > slurm.time_minutes:
            raise ConfigError(f"[slurm] time_minutes = {slurm.time_minutes} is shorter than one '{stage}' task's "
                              f"planned {minutes:.0f} min (experiment plan): raise it (and ask for "
                              "requeue), or the task is killed at its limit every time")
    problem = shared_folder_problem(study, cluster_nodes(), filesystem_type(study))
    if problem:
        raise ConfigError(problem)


def cancel(job_id: str) -> None:
    _slurm("scancel", job_id)
