"""fig3_paper rehearsed on a local Ray cluster with a worker killed mid-cell. In a file of its own
so that the test processes (pytest-xdist, one file per process at a time) share the heaviest
rehearsals between them."""

from __future__ import annotations

import pandas as pd
import pytest

from dermsynth.analysis.report import build_report
from dermsynth.experiments.presets import preset_path
from dermsynth.experiments.rehearsal import rehearse
from dermsynth.experiments.runner import run_experiment
from dermsynth.experiments.spec import load_experiment

pytestmark = pytest.mark.slow


def test_fig3_rehearsal_on_ray_with_a_worker_killed(tmp_path):
    """fig3_paper rehearsed as Ray tasks on a 2-worker local cluster: fine-tunes, generation per
    class (each after its own fine-tune), the checks and the cells; one worker is killed with
    SIGKILL while it trains a cell, Ray runs that cell again, and each cell ends with one record.
    Without Ray installed, the same rehearsal runs locally."""
    import json
    import os
    import threading

    from dermsynth.experiments.results import results_table
    from worker_kill import kill_first_worker_mid_cell

    try:
        import ray  # noqa: F401
        executor = "ray"
    except ImportError:
        executor = "local"
    spec = rehearse(load_experiment(preset_path("fig3_paper")), seeds=1, cache_dir=str(tmp_path / "cache"),
                    smaller=True)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault(
        "res", run_experiment(spec, tmp_path, executor=executor, workers=2)))
    worker.start()
    if executor == "ray":
        kill_first_worker_mid_cell(tmp_path / "runs", result)
    worker.join(timeout=900)
    res = result["res"]
    assert res.failed == 0 and len(results_table(tmp_path)) == res.runs == 28
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    assert len({r["run_id"] for r in records}) == len(records) == 28
    if executor == "ray":
        logs = [json.loads(p.read_text()) for p in (tmp_path / "tasks").glob("*.json")]
        assert {x["kind"] for x in logs} == {"clean", "train-generator", "finetune", "generate", "recognisability",
                                             "audit", "train"}
        assert all(x["pid"] != os.getpid() for x in logs)  # every task ran in a Ray worker
        by_name = {x["name"]: x for x in logs}
        for x in logs:
            if x["name"].startswith("generate/per-class/"):
                label = x["name"].rsplit("/", 1)[1]
                assert by_name[f"finetune/per-class/pool/{label}"]["end"] <= x["start"]
    html = build_report(tmp_path).read_text()
    comps = pd.read_csv(tmp_path / "comparisons.csv")
    assert set(comps["generator_finetune"]) == {"none", "per-class"}  # pretrained vs DreamBooth stand-in
    assert set(comps["method"]) == {"inpaint", "in-then-outpaint", "text-to-image"}
    assert len(comps) == 2 * 2 * 3 * 2  # n_real × transforms × method × generator
    assert len(list((tmp_path / "finetuned").iterdir())) == 9  # one model per class
    assert "fitted gain" not in html and "no saturation" not in html  # no dose fit in Fig. 3
    # one sentence per generator: an n_real never appears twice in a sentence ("at 1 and 1 and 6 and 6")
    assert "pretrained generator" in html and "generator fine-tuned per class" in html
    assert " 1 and 1 " not in html
    assert (tmp_path / "figures" / "fig3_accuracy_vs_nreal.png").exists()
