"""Experiment specs, the grid, the runner (resume, kill -9, failures), status and results."""

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from dermsynth.errors import ConfigError
from dermsynth.experiments.presets import preset_path
from dermsynth.experiments.results import results_table
from dermsynth.experiments.runner import experiment_status, run_experiment
from dermsynth.experiments.spec import cells, load_experiment, validate_experiment
from worker_kill import kill_first_worker_mid_cell


def tiny_experiment(demo_root, **over):
    raw = {
        "name": "tiny",
        "seeds": 2,
        "base": dict(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4,
                     image_size=32, backbone="test_efficientnet", max_epochs=1, patience=1,
                     cache_dir=str(demo_root / "cache"), threads=1),
        "grid": {"n_real": [2, 4]},
    }
    raw.update(over)
    return validate_experiment(raw)


def test_presets_are_valid_and_paper_grids_are_exact():
    fig3 = load_experiment(preset_path("fig3_paper"))
    assert fig3.grid["n_real"] == [1, 16, 32, 64, 128, 228] and fig3.seed_list() == [0, 1, 2, 3, 4]
    # 6 n_real × 2 transforms × (1 baseline + 3 methods × 2 generators) × 5 seeds
    runs = cells(fig3)
    assert len(runs) == 6 * 2 * 7 * 5
    assert {r.generator_finetune for r in runs} == {None, "none", "per-class"}
    assert all(r.generator_finetune is None for r in runs if r.synthetic_per_real == 0)  # one shared baseline
    # every paper preset fine-tunes (DDI: one model, 25 epochs) and pins the backbone's weights
    for name in ("fig3_paper", "fig4_paper", "imbalance_paper", "skin_type_paper"):
        spec = load_experiment(preset_path(name))
        assert set(spec.generator.finetune_values()) - {"none"}, name
        assert spec.base["backbone"] == "tf_efficientnetv2_m.in1k"
    ddi = load_experiment(preset_path("skin_type_paper")).generator
    assert ddi.finetune == "all" and ddi.dreambooth.epochs == 25
    fig4 = load_experiment(preset_path("fig4_paper"))
    assert fig4.grid["synthetic_per_real"] == [0, 10, 25, 50, 75] and len(cells(fig4)) == 3 * 5 * 2 * 5
    for name in ("quickstart", "fig3_cpu", "fig4_cpu", "imbalance_cpu", "imbalance_paper", "skin_type_paper",
                 "skin_type_f17k_cpu"):
        assert cells(load_experiment(preset_path(name)))


def test_spec_errors_name_field_and_values(tmp_path):
    with pytest.raises(ConfigError, match="n_rael"):
        validate_experiment({"name": "x", "grid": {"n_rael": [1]}})
    with pytest.raises(ConfigError, match="synthetic_per_real.*-1"):
        validate_experiment({"name": "x", "grid": {"synthetic_per_real": [-1]}})
    with pytest.raises(ConfigError, match="synthetic_methods.*harmonize"):
        validate_experiment({"name": "x", "grid": {"synthetic_methods": ["harmonize"]}})
    with pytest.raises(ConfigError, match="mode"):
        validate_experiment({"name": "x", "base": {"mode": "half"}})
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[grid\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(bad)


def test_grid_shares_real_only_baseline():
    spec = validate_experiment({"name": "x", "seeds": 1, "grid": {
        "synthetic_per_real": [0, 10], "synthetic_methods": ["inpaint", "text-to-image"]}})
    runs = cells(spec)
    assert len(runs) == 3
    assert sum(r.synthetic_per_real == 0 for r in runs) == 1


def test_run_resume_status_results_and_foreign_folder(demo_root, tmp_path):
    spec = tiny_experiment(demo_root)
    out = tmp_path / "exp"
    res = run_experiment(spec, out, workers=1)
    assert (res.runs, res.ran, res.failed) == (4, 4, 0)
    st = experiment_status(spec, out)
    assert (st["state"] == "done").all()
    again = run_experiment(spec, out, workers=1)
    assert again.ran == 0
    table = results_table(out)
    assert len(table) == 4 and set(table["n_real"]) == {2, 4} and table["run_id"].is_unique
    other = tiny_experiment(demo_root, name="other")
    with pytest.raises(ConfigError, match="another config"):
        run_experiment(other, out)


def test_failed_cell_is_recorded_and_others_finish(demo_root, tmp_path):
    spec = tiny_experiment(demo_root, grid={"lr": [1e-3, 1e30]}, base={**tiny_experiment(demo_root).base,
                                                                        "optimizer": "sgd"}, seeds=1)
    res = run_experiment(spec, tmp_path / "e", workers=1)
    assert res.failed == 1 and res.ran == 2
    failed = list((tmp_path / "e" / "runs").glob("*.failed.json"))
    assert len(failed) == 1 and "TrainingDiverged" in json.loads(failed[0].read_text())["error"]
    st = experiment_status(spec, tmp_path / "e")
    assert sorted(st["state"]) == ["done", "failed"]


def test_too_large_axis_value_fails_before_training(demo_root, tmp_path):
    from dermsynth.errors import SplitError

    with pytest.raises(SplitError, match="n_real=500"):
        run_experiment(tiny_experiment(demo_root, grid={"n_real": [2, 500]}), tmp_path / "e0")
    assert not (tmp_path / "e0" / "runs").exists() or not list((tmp_path / "e0" / "runs").glob("*.json"))
    spec = tiny_experiment(demo_root, grid={"n_real": [2], "synthetic_per_real": [3]},
                           generator={"backend": "builtin", "per_image": 2, "methods": ["inpaint"]})
    with pytest.raises(ConfigError, match="per_image"):
        run_experiment(spec, tmp_path / "e")
    spec = tiny_experiment(demo_root, grid={"n_real": [2], "synthetic_per_real": [1]},
                           base={"synthetic_store": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match="not a synthetic store"):
        run_experiment(spec, tmp_path / "e2")


@pytest.mark.slow
def test_kill_minus_9_then_rerun_finishes_each_cell_once(demo_root, tmp_path):
    spec = tiny_experiment(demo_root, grid={"n_real": [2, 3, 4]}, seeds=2)
    cfg = tmp_path / "spec.json"
    cfg.write_text(spec.model_dump_json())
    out = tmp_path / "exp"
    # The child kills itself (SIGKILL: no clean-up, no atexit) as its third cell starts, so two
    # records exist and the third is mid-flight. Polling from outside raced a fast machine.
    script = textwrap.dedent(f"""
        import json, os, signal
        import dermsynth.experiments.executors as executors
        from dermsynth.experiments.spec import validate_experiment
        from dermsynth.experiments.runner import run_experiment

        started = []
        real_training = executors.run_training
        def dies_at_the_third_cell(*args, **kwargs):
            started.append(1)
            if len(started) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_training(*args, **kwargs)
        executors.run_training = dies_at_the_third_cell

        spec = validate_experiment(json.loads(open({str(cfg)!r}).read()))
        run_experiment(spec, {str(out)!r}, workers=1)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert list((out / "runs").glob("*.running"))  # the killed cell left its marker behind
    first = {p.name for p in (out / "runs").glob("*.json")}
    assert len(first) == 2
    res = run_experiment(spec, out, workers=1)
    assert res.ran == 6 - len(first) and res.failed == 0
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(records) == 6 and len({r["run_id"] for r in records}) == 6
    assert not list((out / "runs").glob("*.tmp"))


@pytest.mark.slow
def test_a_pool_worker_killed_mid_cell_loses_only_that_cell(demo_root, tmp_path):
    """kill -9 of a pool process while it trains a cell: the cell runs again in a fresh pool,
    and every cell ends with exactly one record (the Ray case: test_rehearsal.py)."""
    import threading

    executor = "local"

    spec = tiny_experiment(demo_root, grid={"n_real": [2, 3]}, seeds=2)
    out, result = tmp_path / executor, {}
    worker = threading.Thread(target=lambda: result.setdefault(
        "res", run_experiment(spec, out, executor=executor, workers=2)))
    worker.start()
    kill_first_worker_mid_cell(out / "runs", result)
    worker.join(timeout=600)
    assert "res" in result, "the run did not finish after a worker was killed"
    assert result["res"].failed == 0 and result["res"].ran == 4
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(records) == 4 and len({r["run_id"] for r in records}) == 4
    assert not list((out / "runs").glob("*.failed.json"))




def test_default_workers_one_single_threaded_process_per_core_when_cells_amortise_a_pool(monkeypatch):
    """On a CPU the default is a process per core (intra-op threads scale poorly on small models),
    once there are CELLS_PER_WORKER cells per process to pay for its start-up, and never more
    than free memory holds; the pool starts the cells with the most training images first."""
    from types import SimpleNamespace

    import psutil
    import torch

    from dermsynth.experiments import executors
    from dermsynth.train.spec import RunSpec

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=64 * 2**30))
    cells = [RunSpec(n_real=n, synthetic_per_real=s) for n in (4, 16) for s in (0, 2) for _ in range(6)]
    assert executors.default_workers(cells) == 4  # 24 cells: one process per core
    assert executors.default_workers(cells[:11]) == 2  # 11 cells: 2 processes of ≥ 4 cells each
    assert executors.default_workers(cells[:3]) == 1  # a few cells run in this process
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=5 * 2**30))
    assert executors.default_workers(cells) == 2  # what 5 GiB holds at WORKER_GIB each
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert executors.default_workers(cells) == 2  # with a GPU: half the cores, as before
    order = [(r.n_real, r.synthetic_per_real) for r in executors.largest_first(cells)]
    assert order[:6] == [(16, 2)] * 6 and order[-6:] == [(4, 0)] * 6
