"""Issue 36, items 2–3: the Slurm executor against a real single-node Slurm (slurm-wlm and munge
from Debian's packages, started here under a temporary folder): a study whose stages and cells go
out as job arrays, one array task cancelled mid-cell and the driver killed, a second driver that
re-attaches and finishes — every cell once, and the same results as a local-pool run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

from dermsynth.errors import ConfigError
from dermsynth.experiments.slurm_queue import check_request, shared_folder_problem, slurm_minutes
from dermsynth.experiments.slurm_spec import SlurmSpec, with_overrides
from slurm_cluster import SlurmCluster

CLASSES = ["psoriasis", "lichen planus"]


def small_study(demo_root: Path) -> dict:
    return {"name": "slurm-small", "seeds": 2, "recognisability": False, "grid": {"n_real": [4, 8]},
            "base": {"dataset": "demo", "root": str(demo_root), "classes": CLASSES, "demo_n_per_class": 30,
                     "demo_size": 32, "n_test": 6, "n_val": 5, "backbone": "test_resnet", "image_size": 16,
                     "max_epochs": 3, "threads": 1}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = SlurmCluster.why_not()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the Slurm tests cannot run here: {why}")
        pytest.skip(why)
    c = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        pytest.fail(f"a single-node Slurm would not start ({exc}): {getattr(exc, 'stderr', b'')!r} {c.logs()}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(c.conf)
    yield c
    c.stop()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


@pytest.mark.slow
def test_a_study_on_slurm_survives_a_cancelled_task_and_a_killed_driver(cluster, demo_root, tmp_path):
    from dermsynth.analysis.report import build_report
    from dermsynth.experiments.results import results_table
    from dermsynth.experiments.runner import experiment_status, run_experiment
    from dermsynth.experiments.spec import validate_experiment

    spec = small_study(demo_root)
    config = tmp_path / "study.toml"
    config.write_text(tomli_w.dumps({**spec, "slurm": {"mem_gb": 0.25, "time_minutes": 10, "poll_seconds": 1,
                                                          "lost_after_seconds": 3}}))
    study = tmp_path / "on-slurm"
    driver_log = tmp_path / "driver.log"
    driver = subprocess.Popen([str(Path(sys.executable).parent / "dermsynth"), "experiment", "run", str(config),
                               "--study", str(study), "--executor", "slurm", "--slurm-cpus-per-task", "1"],
                              env=cluster.env, stdout=subprocess.DEVNULL, stderr=driver_log.open("w"))
    jobs, victim, marker = study / "slurm" / "jobs.json", None, None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline and driver.poll() is None:
        running = list((study / "runs").glob("*.running")) if (study / "runs").exists() else []
        cells = {k: v for k, v in json.loads(jobs.read_text()).items() if k.startswith("train/")} \
            if jobs.exists() else {}
        if running and cells and running[0].read_text().strip():
            marker = running[0]
            victim = cells[f"train/{marker.name.removesuffix('.running')}"]["job_id"]
        time.sleep(0.1)
    assert victim, f"no cell started on Slurm: {driver_log.read_text()[-3000:]}"
    # scancel the array task mid-cell. submitit ignores the SIGTERM that comes first, and Slurm sends
    # SIGKILL only after KillWait (30 s by default; seconds here, long enough for a tiny cell to
    # finish), so the kill that would follow is sent at once: the cell dies unfinished.
    subprocess.run(["scancel", victim], check=True, env=cluster.env)
    os.kill(int(marker.read_text()), signal.SIGKILL)
    driver.send_signal(signal.SIGKILL)  # and the login-node driver with it, before it sees
    driver.wait()
    before = json.loads(jobs.read_text())

    full = validate_experiment({**spec, "slurm": {"mem_gb": 0.25, "time_minutes": 10, "poll_seconds": 1,
                                                  "lost_after_seconds": 3, "cpus_per_task": 1}})
    res = run_experiment(full, study, executor="slurm")  # a new driver: re-attaches, resubmits the lost cell
    after = json.loads(jobs.read_text())
    assert res.failed == 0 and res.runs == 4
    records = [json.loads(p.read_text()) for p in (study / "runs").glob("*.json")]
    assert len(records) == len({r["run_id"] for r in records}) == 4  # every cell once
    lost = next(k for k, v in before.items() if v["job_id"] == victim)
    assert after[lost]["job_id"] != victim  # the cancelled cell went out again
    kept = [k for k, v in before.items() if k.startswith("train/") and k != lost]
    assert any(after[k]["job_id"] == before[k]["job_id"] for k in kept)  # the others were re-attached, not resubmitted
    logs = [json.loads(p.read_text()) for p in (study / "tasks").glob("*.json")]
    assert {x["kind"] for x in logs} >= {"audit"} and all(x["pid"] != os.getpid() for x in logs)
    status = experiment_status(full, study)
    assert set(status["state"]) == {"done"} and status["slurm_job"].notna().all()

    local = tmp_path / "local"
    run_experiment(validate_experiment(spec), local, executor="local", workers=1)  # in this process
    metrics = ["run_id", "accuracy", "macro_f1"]
    on_slurm, here = (results_table(s)[metrics].sort_values("run_id").reset_index(drop=True) for s in (study, local))
    pd.testing.assert_frame_equal(on_slurm, here)
    build_report(study), build_report(local)  # the report's table of cells: accuracy, its intervals, AUROC
    pd.testing.assert_frame_equal(pd.read_csv(study / "cells.csv"), pd.read_csv(local / "cells.csv"))


def test_the_request_is_checked_against_the_cluster_before_anything_is_submitted(cluster, tmp_path):
    check_request(SlurmSpec(partition="debug", time_minutes=30), tmp_path)  # fits
    with pytest.raises(ConfigError, match="partition 'gpu' does not exist.*debug"):
        check_request(SlurmSpec(partition="gpu"), tmp_path)
    with pytest.raises(ConfigError, match="longer than partition 'debug' allows \\(60 min\\)"):
        check_request(SlurmSpec(time_minutes=90), tmp_path)
    with pytest.raises(ConfigError, match="shorter than one 'train classifiers' task's planned 45 min"):
        check_request(SlurmSpec(time_minutes=30), tmp_path, {"train classifiers": 45.0})


def test_no_slurm_on_the_machine_is_said_before_any_stage(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="sbatch not found on PATH"):
        check_request(SlurmSpec(), tmp_path)


def test_a_study_folder_the_other_nodes_cannot_see_is_refused():
    assert "only this machine sees" in shared_folder_problem(Path("/tmp/s"), ["node-17"], "tmpfs")
    assert shared_folder_problem(Path("/home/me/s"), ["node-17"], "nfs4") is None
    assert shared_folder_problem(Path("/tmp/s"), [], "tmpfs") is None  # every node is this machine


def test_slurm_settings_read_and_overridden_and_left_out_of_the_digest(demo_root):
    from dermsynth.experiments.spec import validate_experiment

    assert [slurm_minutes(x) for x in ("60", "1:00:00", "2-00:00:00", "infinite", "30:00")] == [60, 60, 2880, None, 30]
    spec = SlurmSpec(sbatch_lines=["--account=lab", "--exclusive"], requeue=True)
    assert spec.additional_parameters() == {"account": "lab", "exclusive": True, "requeue": True}
    with pytest.raises(ValueError, match="one long option"):
        SlurmSpec(sbatch_lines=["#SBATCH --account=lab"])
    merged = with_overrides(SlurmSpec(partition="gpu", cpus_per_task=8), cpus_per_task=2, partition=None)
    assert (merged.partition, merged.cpus_per_task) == ("gpu", 2)
    with pytest.raises(ConfigError, match="--slurm options"):
        with_overrides(None, cpus_per_task=0)
    plain = validate_experiment(small_study(demo_root))
    on_cluster = validate_experiment({**small_study(demo_root), "slurm": {"partition": "gpu", "gpus_per_task": 1}})
    assert plain.digest() == on_cluster.digest()  # where a study runs is not what it found


def test_the_plan_gives_each_stages_array_size():
    from dermsynth.experiments.plan import plan
    from dermsynth.experiments.presets import preset_path
    from dermsynth.experiments.spec import cells, load_experiment

    spec = load_experiment(preset_path("fig3_paper"))
    table = plan(spec, "a100").set_index("stage")
    assert table.loc["train classifiers", "tasks"] == len(cells(spec))
    assert table.loc["generate", "tasks"] == 9 * len(spec.generator.finetune_values())  # a class per task
    hours = table.loc["train classifiers"]
    assert hours["hours_per_task"] == pytest.approx(hours["device_hours"] / hours["tasks"], abs=1e-3)
