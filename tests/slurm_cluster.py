"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd from Debian's
packages (slurm-wlm, munge), each with its own files under a temporary folder, on free ports.

Started as root (the daemons run as SlurmUser=root); ``SlurmCluster.why_not()`` says what is
missing on a machine where it cannot start, so the test can say so rather than skip silently.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "srun")


def binary(name: str) -> str:
    """A daemon's path: on PATH, or in /usr/sbin (not on every user's PATH)."""
    return shutil.which(name) or f"/usr/sbin/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """One node named after this machine (its short hostname), its CPUs, one partition ``debug``."""

    def __init__(self, folder: Path, cpus: int | None = None, memory_mb: int = 4000, kill_wait: int = 0):
        self.folder = folder
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.memory_mb, self.kill_wait = memory_mb, kill_wait
        self.conf = folder / "slurm.conf"
        self.procs: list[str] = []

    @staticmethod
    def why_not() -> str | None:
        missing = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
        if missing:
            return f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge)"
        if os.geteuid() != 0:
            return "the test cluster's daemons run as root (SlurmUser=root); this is not root"
        return None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> SlurmCluster:
        f = self.folder
        for sub in ("state", "spool", "munge"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(f / "munge", 0o700)
        key, sock = f / "munge" / "munge.key", f / "munge" / "munge.socket"
        subprocess.run([binary("mungekey"), "--create", "--keyfile", str(key)], check=True, capture_output=True)
        subprocess.run([binary("munged"), "--force", f"--socket={sock}", f"--key-file={key}",
                        f"--pid-file={f}/munge/pid", f"--log-file={f}/munge/log", f"--seed-file={f}/munge/seed"],
                       check=True, capture_output=True)
        ctl, node = free_port(), free_port()
        self.conf.write_text(f"""\
ClusterName=dermsynth-test
SlurmctldHost={self.host}
SlurmUser=root
SlurmctldPort={ctl}
SlurmdPort={node}
AuthType=auth/munge
AuthInfo=socket={sock}
StateSaveLocation={f}/state
SlurmdSpoolDir={f}/spool
SlurmctldPidFile={f}/slurmctld.pid
SlurmdPidFile={f}/slurmd.pid
SlurmctldLogFile={f}/slurmctld.log
SlurmdLogFile={f}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait={self.kill_wait}
MinJobAge=300
NodeName={self.host} CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=60 State=UP
""")
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([binary(daemon), "-f", str(self.conf)], check=True, capture_output=True, env=self.env)
            self.procs.append(daemon)
        self.wait_idle()
        return self

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env).stdout
            if out.strip() in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the Slurm node did not come up in {timeout:.0f} s: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in
                         (self.folder / "slurmctld.log", self.folder / "slurmd.log") if p.exists())

    def stop(self) -> None:
        """Cancel what is still queued (its job steps would outlive the daemons), then stop them."""
        subprocess.run(["scancel", "--full", "-u", "root"], env=self.env, capture_output=True, timeout=30)
        time.sleep(1)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/pid"):
            path = self.folder / pid_file
            with contextlib.suppress(OSError, ValueError):  # not running, or never started
                os.kill(int(path.read_text().strip()), 15)
