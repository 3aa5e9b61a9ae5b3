"""Each paper preset rehearsed end to end on a CPU (the smaller CI rehearsal: one seed, the
first and last n_real, two rare classes): the stages run, and the report holds the
comparisons that preset is for — not just files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dermsynth.analysis.report import build_report
from dermsynth.experiments.presets import preset_path
from dermsynth.experiments.rehearsal import rehearse
from dermsynth.experiments.runner import run_experiment
from dermsynth.experiments.spec import cells, load_experiment

pytestmark = pytest.mark.slow


def _rehearse(name: str, out):
    spec = rehearse(load_experiment(preset_path(name)), seeds=1, cache_dir=str(out / "cache"), smaller=True)
    res = run_experiment(spec, out, workers=1)
    assert res.failed == 0
    # the paper presets clean their data first: a stage of the graph, with what it found on disk
    assert json.loads((out / "tasks" / "clean_0.json").read_text())["kind"] == "clean"
    assert json.loads((out / "cleaning" / "split-0.json").read_text())["settings"]["embedding"] == "pixels:8"
    html = build_report(out).read_text()
    return spec, html


def test_full_rehearsal_keeps_every_axis_value():
    paper = load_experiment(preset_path("fig3_paper"))
    spec = rehearse(paper)
    assert len(spec.grid["n_real"]) == len(paper.grid["n_real"]) and spec.seed_list() == [0, 1]
    assert spec.generator.finetune == paper.generator.finetune and spec.generator.per_image == 10
    assert len(cells(spec)) == 6 * 2 * 7 * 2
    imb = rehearse(load_experiment(preset_path("imbalance_paper")))
    assert imb.imbalance.rare_n == [1, 2, 4] and imb.base["n_real"] == 8  # 200/25: parity still exact


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


def test_fig4_rehearsal(tmp_path):
    spec, html = _rehearse("fig4_paper", tmp_path)
    comps = pd.read_csv(tmp_path / "comparisons.csv")
    assert sorted(set(comps["synthetic_per_real"])) == [10, 25, 50, 75]
    assert html.count("saturation") + html.count("fitted gain") >= 2 * 2  # one fit per n_real × transforms
    assert (tmp_path / "figures" / "fig4_dose_response.png").exists()


def test_imbalance_rehearsal(tmp_path):
    spec, html = _rehearse("imbalance_paper", tmp_path)
    comps = pd.read_csv(tmp_path / "comparisons.csv")
    assert len(comps) == (2 + 1) * 3 * 2 * 3  # (rare classes + aggregate) × sizes × scopes × pairs of arms
    assert {"synthetic vs imbalanced", "synthetic vs duplication"} <= set(comps["comparison"])
    assert "fitted gain" not in html and not (tmp_path / "figures" / "fig3_accuracy_vs_nreal.png").exists()
    # the rare class's generator learnt from its arm's real images only, and the report says so
    assert "each run&#39;s own real subset" in html or "each run's own real subset" in html
    assert (tmp_path / "subsets").is_dir() and not (tmp_path / "finetuned").exists()


def test_skin_type_rehearsal(tmp_path):
    spec, html = _rehearse("skin_type_paper", tmp_path)
    groups = pd.read_csv(tmp_path / "skin_group_comparisons.csv")
    assert set(groups["skin_group"]) == {"I-II", "III-IV", "V-VI"} and (groups["n_group"] == 6).all()
    assert "auroc_synthetic" in groups  # binary task: AUROC beside accuracy
    assert (tmp_path / "finetuned" / "all").exists()  # DDI: one model on the remaining images
    assert "By skin-type group (Fig. 5)" in html
