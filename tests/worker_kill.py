"""Killing a worker from outside, mid-cell, as an operator's kill -9 or the OOM killer would."""

from __future__ import annotations

import os
import signal
import time


def kill_first_worker_mid_cell(runs_dir, result: dict) -> int:
    """Wait for a cell to be running in a worker (its ``.running`` file names the pid), then
    kill -9 that worker; returns the pid killed. The deadline only stops a hung study: the stages
    before the first cell took over 180 s on a loaded 2-core machine."""
    deadline = time.time() + 900
    while time.time() < deadline and "res" not in result:
        for running in runs_dir.glob("*.running") if runs_dir.exists() else []:
            try:
                pid = int(running.read_text())
            except (OSError, ValueError):
                continue
            if pid != os.getpid():
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.02)
    raise AssertionError("no cell was seen running in a worker")
