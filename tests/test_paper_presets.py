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
