"""What the paper presets promise before anything runs: which real images a generator learns
from (and that the report says it), and that the data are cleaned as the paper's were."""

from __future__ import annotations

from dermsynth.analysis.report_sections import generator_section
from dermsynth.experiments.presets import preset_path
from dermsynth.experiments.rehearsal import rehearse
from dermsynth.experiments.spec import load_experiment


def test_imbalance_generators_learn_from_the_rare_arm_only_and_the_report_says_so():
    spec = load_experiment(preset_path("imbalance_paper"))
    assert spec.generator.finetune_on == "subset"
    assert rehearse(spec).generator.finetune_on == "subset"  # the rehearsal runs the same arm
    text = generator_section(spec.generator.model_dump()).text
    assert "each run's own real subset" in text and "whole training pool" not in text


def test_imbalance_subset_generators_are_planned_and_make_only_what_their_arm_draws(tmp_path, monkeypatch):
    from dermsynth.experiments.plan import plan
    from dermsynth.experiments.runner import resolve_runs
    from dermsynth.experiments.synthetic_stage import synthetic_tasks

    spec = load_experiment(preset_path("imbalance_paper"))
    stages = plan(spec).set_index("stage")["what"]
    # 9 rare classes × 3 sizes × 5 seeds, one DreamBooth model each; 7, 3 or 1 images per real image
    assert stages["fine-tune generators"].startswith("135 models")
    assert stages["generate"].startswith(f"{9 * 5 * (25 * 7 + 50 * 3 + 100 * 1):,} images")
    monkeypatch.chdir(tmp_path)
    small = rehearse(spec, seeds=1, cache_dir=str(tmp_path / "cache"), smaller=True)
    tasks, _ = synthetic_tasks(small, resolve_runs(small, tmp_path), tmp_path)
    per_store = {t.payload.store: t.payload.k for t in tasks if t.kind == "generate"}
    assert sorted(per_store.values()) == [1, 1, 3, 3, 7, 7]  # 2 rare classes × rare_n 1, 2, 4 of n_real 8
