"""Two processes on one study, against one process alone in the same script: every cell once, and
the wall time of the pair; then one of the pair killed (SIGKILL) mid-cell, the other finishing.

The study: 8 demo cells (n_real 40, 8 seeds, test_resnet at 64 px, 20 epochs; no synthetic data,
so the cells are all the work). Each process is `run_experiment` in a fresh Python with
`run_training` wrapped to log each cell it starts and finishes, so a cell trained twice would show.

    .venv/bin/python bench/shared_study.py

Prints the CPU model and thread count, the single process's wall time, the pair's (and the
ratio), and for the kill: cells recorded, cells started twice, cells finished twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from dermsynth.models.precision_rule import cpu_name

CLASSES = ["psoriasis", "lichen planus", "sarcoidosis"]
SPEC = {"name": "shared", "seeds": 8, "base": {"dataset": "demo", "classes": CLASSES, "demo_n_per_class": 60,
                                              "demo_size": 64, "n_test": 8, "n_val": 6, "n_real": 40,
                                              "backbone": "test_resnet", "image_size": 64, "max_epochs": 20,
                                              "patience": 20, "threads": 1},
        "recognisability": False}

CHILD = textwrap.dedent("""
    import json, os, sys
    import dermsynth.experiments.executors as executors
    from dermsynth.experiments.runner import run_experiment
    from dermsynth.experiments.spec import validate_experiment

    log = open(sys.argv[3], "a", buffering=1)
    real = executors.run_training
    def logged(run, folder):
        log.write(f"start {run.run_id()}\\n")
        out = real(run, folder)
        log.write(f"end {run.run_id()}\\n")
        return out
    executors.run_training = logged
    run_experiment(validate_experiment(json.loads(open(sys.argv[1]).read())), sys.argv[2], workers=1)
""")


def start(cfg: Path, study: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(cfg), str(study), str(log)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def counts(logs: list[Path]) -> tuple[dict, dict]:
    started, ended = {}, {}
    for log in logs:
        for line in log.read_text().splitlines() if log.exists() else []:
            kind, rid = line.split()
            (started if kind == "start" else ended)[rid] = (started if kind == "start" else ended).get(rid, 0) + 1
    return started, ended


def main() -> None:
    print(f"CPU: {cpu_name()}; threads: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = tmp / "spec.json"
        cfg.write_text(json.dumps(SPEC))
        warm = start(cfg, tmp / "warm", tmp / "warm.log")  # renders the demo data and fills caches once
        warm.wait()
        t0 = time.perf_counter()
        start(cfg, tmp / "one", tmp / "one.log").wait()
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        pair = [start(cfg, tmp / "two", tmp / f"two-{i}.log") for i in range(2)]
        for p in pair:
            p.wait()
        two = time.perf_counter() - t0
        started, ended = counts([tmp / "two-0.log", tmp / "two-1.log"])
        per_process = [sum(counts([tmp / f"two-{i}.log"])[1].values()) for i in range(2)]
        print(f"one process: {one:.1f} s; two processes on one study: {two:.1f} s (ratio {two / one:.2f}); "
              f"cells per process {per_process}; cells finished twice: {sum(v > 1 for v in ended.values())}")
        killed, survivor = (start(cfg, tmp / "kill", tmp / f"kill-{i}.log") for i in range(2))
        victim_log = tmp / "kill-0.log"
        while not any(line.startswith("start") for line in (victim_log.read_text().splitlines()
                                                            if victim_log.exists() else [])[1:]):
            time.sleep(0.2)  # the victim's second cell has started: kill it mid-cell
        time.sleep(1.0)
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()  # reaped, as a shell reaps a process killed from another terminal (a zombie's pid lives on)
        t0 = time.perf_counter()
        survivor.wait()
        after = time.perf_counter() - t0
        started, ended = counts([tmp / "kill-0.log", tmp / "kill-1.log"])
        records = len(list((tmp / "kill" / "runs").glob("*.json")))
        print(f"one of two killed mid-cell: {records} of 8 cells recorded by the survivor's end; "
              f"started twice: {sum(v > 1 for v in started.values())} (the killed cell, taken over); "
              f"finished twice: {sum(v > 1 for v in ended.values())}; lost: {8 - records}; the survivor ended "
              f"{after:.1f} s after the kill")


if __name__ == "__main__":
    main()
