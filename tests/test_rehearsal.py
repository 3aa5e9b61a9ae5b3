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
