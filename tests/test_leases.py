"""Issue 36, item 1: leases on a study's tasks — one winner per task, a dead holder's task taken
over, a live one never — and two processes on one study each doing part of it, every cell once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from dermsynth.experiments.leases import Leases


def test_one_process_wins_a_task_and_a_live_lease_is_never_taken(tmp_path):
    a, b = Leases(tmp_path), Leases(tmp_path)
    b.me = {**b.me, "pid": b.me["pid"] + 1, "host": "another-node"}  # as if from elsewhere
    lease = a.claim("train/x")
    assert lease is not None and b.claim("train/x") is None
    assert b.holder("train/x")["pid"] == a.me["pid"] and set(b.held()) == {"train/x"}
    a.release(lease)
    assert b.holder("train/x") is None and b.claim("train/x") is not None


def test_a_stale_lease_is_taken_over_and_its_old_holder_learns_it(tmp_path):
    a = Leases(tmp_path, timeout=0.5, heartbeat=60)  # a holder that stops beating (stalled, or its node lost)
    old = a.claim("stage/generate")
    time.sleep(1.2)
    b = Leases(tmp_path, timeout=0.5, heartbeat=0.1)
    b.me = {**b.me, "host": "another-node"}
    new = b.claim("stage/generate")
    assert new is not None and new.generation == old.generation + 1
    assert not a.beat(old) and old.lost  # the old holder's next beat finds the later generation
    a.release(old)  # releasing a lost lease leaves the new holder's alone
    assert b.holder("stage/generate") is not None


def test_a_dead_holder_on_this_host_loses_its_lease_at_once(tmp_path):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os
        from dermsynth.experiments.leases import Leases
        Leases({str(tmp_path)!r}).claim("train/y")
        os._exit(0)  # ends without releasing, as kill -9 would
    """)], check=True)
    assert proc.returncode == 0
    lease = json.loads(next((tmp_path / "leases").glob("train_y.0.lease")).read_text())
    assert lease["task"] == "train/y" and lease["host"]
    taker = Leases(tmp_path)  # the default 300 s timeout: only the dead pid can free it now
    assert taker.claim("train/y").generation == 1


def test_two_processes_on_one_study_run_every_cell_once(demo_root, tmp_path):
    from dermsynth.experiments.runner import load_records

    spec = {"name": "shared", "seeds": 6, "recognisability": False,
            "base": {"dataset": "demo", "root": str(demo_root), "classes": ["psoriasis", "lichen planus"],
                     "demo_n_per_class": 30, "demo_size": 32, "n_test": 5, "n_val": 5, "n_real": 4,
                     "backbone": "test_resnet", "image_size": 16, "max_epochs": 2, "threads": 1}}
    cfg = tmp_path / "spec.json"
    cfg.write_text(json.dumps(spec))
    child = textwrap.dedent("""
        import json, sys
        import dermsynth.experiments.executors as executors
        from dermsynth.experiments.runner import run_experiment
        from dermsynth.experiments.spec import validate_experiment
        log = open(sys.argv[3], "a", buffering=1)
        real = executors.run_training
        def logged(run, folder):
            out = real(run, folder)
            log.write(run.run_id() + "\\n")
            return out
        executors.run_training = logged
        run_experiment(validate_experiment(json.loads(open(sys.argv[1]).read())), sys.argv[2], workers=1)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", child, str(cfg), str(tmp_path / "study"),
                               str(tmp_path / f"log{i}")]) for i in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    trained = [(tmp_path / f"log{i}").read_text().split() for i in range(2)]
    everything = trained[0] + trained[1]
    assert len(everything) == len(set(everything)) == 6  # every cell once, none twice
    assert len(load_records(tmp_path / "study")) == 6
