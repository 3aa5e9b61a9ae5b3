"""Rehearse a paper-scale experiment on a CPU before spending GPU-days on it.

``rehearse(spec)`` keeps what a run's *result* depends on structurally — the stages, every
grid axis with the same number of distinct values, the generator variants (pretrained /
fine-tuned, per class or one model), the synthetic-per-real ratios, the imbalance arms and
parity, the stratification, binary vs multi-class, every statistic, figure and report
section — and swaps what only costs time for stand-ins: the demo data set (same class
names for F17k-9; two classes for a binary task), 16-px images, a tiny random backbone,
the built-in generator (for Stable Diffusion, with a few steps of fine-tuning in place of
DreamBooth), real-image counts scaled down so parity and nesting still hold, two seeds.

What it does not check: that Stable Diffusion / DreamBooth load and run at 512 px on a GPU,
pretrained weights, accuracy levels, memory and time at full size.
"""

from __future__ import annotations

import math
from typing import Any

from dermsynth.data.demo import DEMO_CLASSES
from dermsynth.experiments.spec import ExperimentSpec, validate_experiment
from dermsynth.train.spec import RunSpec

# Fields of [base] that only cost time (or need files that a rehearsal does not have).
STAND_IN_BASE = {"dataset": "demo", "root": None, "label_column": "label", "demo_size": 32, "image_size": 16,
                 "backbone": "test_resnet", "pretrained": False, "pretrained_path": None, "max_epochs": 2,
                 "patience": 1, "lr": 3e-3, "threads": 1}
STAND_IN_GENERATOR = {"backend": "builtin", "store": None, "steps": 2, "batch_size": 64}
STAND_IN_TABLES = {"builtin": {"model": None, "size": 16, "train_steps": 20, "train_minutes": None,
                               "block_out_channels": [16, 32], "finetune_steps": 3},
                   "sd": {"model": None, "inpaint_model": None}, "dreambooth": {"lora": False}}
# With a masked method, 4 sampler steps, not 2: at 2 (or 3) a masked pass starts from (almost) the
# reference itself, so inpaint and in-then-outpaint stores hold near-copies of the real images and
# score alike (generate/builtin/sampling.py: masked_copy_problem); at 4 each method changes its own
# region. Text-to-image starts from noise, so a text-to-image-only rehearsal keeps the cheaper 2.
MASKED_STEPS = 4
STAND_IN_CLEANING = {"embedding": "pixels:8"}
N_TEST, N_VAL = 6, 4


def _scaled_n_real(values: list[int]) -> dict[int, int]:
    """Map n_real values to 1, 2, 3, …: same count of distinct, nested subsets, tiny."""
    return {v: i + 1 for i, v in enumerate(sorted(set(values)))}


def _imported_stand_in(spec: ExperimentSpec, base: dict, grid: dict, cache_dir: str | None) -> dict:
    """A stand-in for an imported store (experiments/released_rehearsal.py), written beside the cache."""
    from pathlib import Path

    from dermsynth.experiments.released_rehearsal import released_stand_in

    methods = grid.get("synthetic_methods") or [base.get("synthetic_methods") or "text-to-image"]
    methods = sorted({m for entry in methods for m in ([entry] if isinstance(entry, str) else entry)})
    per_real = max([base.get("synthetic_per_real", 1), *grid.get("synthetic_per_real", [])])
    variant = "pretrained" if "pretrained" in Path(spec.base["synthetic_store"]).name else "finetune"
    folder = Path(cache_dir or ".dermsynth-cache").parent / "released-stand-in"
    # Half the images are referenced: room for the held-out quotas among the other half, whatever the split
    grown = {**base, "demo_n_per_class": base["demo_n_per_class"] + 2 * (N_TEST + N_VAL)}
    return {"demo_n_per_class": grown["demo_n_per_class"],
            **released_stand_in(grown, methods, max(1, per_real), variant, folder)}


def rehearse(spec: ExperimentSpec, seeds: int = 2, cache_dir: str | None = None,
             smaller: bool = False) -> ExperimentSpec:
    """The stand-in experiment for ``spec`` (see the module docstring for what is kept).

    ``smaller`` (for CI) keeps the first and last n_real and two rare classes: every
    comparison and report section still occurs, not every axis value.
    """
    raw: dict[str, Any] = spec.model_dump()
    base = dict(raw["base"])
    binary = base.get("dataset") == "ddi" or base.get("label_column") == "three_partition_label"
    classes = DEMO_CLASSES[:2] if binary else DEMO_CLASSES
    grid = {k: list(v) for k, v in raw["grid"].items()}
    n_real = base.get("n_real", RunSpec.model_fields["n_real"].default)
    imbalance = raw.get("imbalance")
    if smaller:
        if len(grid.get("n_real", [])) > 2:
            grid["n_real"] = [min(grid["n_real"]), max(grid["n_real"])]
        if imbalance:
            imbalance["rare_classes"] = imbalance["rare_classes"][:2]
    if imbalance:
        factor = math.gcd(*imbalance["rare_n"])  # parity: n_real / rare_n stays an integer
        imbalance["rare_n"] = [n // factor for n in imbalance["rare_n"]]
        base["n_real"] = n_real // factor
        imbalance["rare_classes"] = [c for c in imbalance["rare_classes"] if c in classes] or classes[:1]
    elif "n_real" in grid:
        mapping = _scaled_n_real(grid["n_real"])
        grid["n_real"] = [mapping[v] for v in grid["n_real"]]
    else:
        base["n_real"] = min(n_real, 4)
    largest = max([base.get("n_real", 4), *grid.get("n_real", [])])
    strata = 3 if base.get("stratify") == "skin_group" else 1  # the demo set spreads classes over groups
    base.update(STAND_IN_BASE, classes=list(classes), n_test=N_TEST, n_val=N_VAL,
                demo_n_per_class=(N_TEST + N_VAL) * strata + largest + 8)
    if base.get("cleaning"):  # the stage runs as at paper scale; a pixel encoder stands in for CLIP's weights
        base["cleaning"] = {**base["cleaning"], **STAND_IN_CLEANING}
    if cache_dir:
        base["cache_dir"] = cache_dir
    raw.update(name=f"{spec.name}-rehearsal", seeds=seeds, base=base, grid=grid, imbalance=imbalance)
    raw["description"] = f"CPU rehearsal of {spec.name}: stand-ins for data, models and sizes"
    if not raw.get("generator") and base.get("synthetic_store"):  # a study on imported (released) images
        base.update(_imported_stand_in(spec, base, grid, cache_dir))
    if raw.get("generator"):
        masked = any(m != "text-to-image" for m in raw["generator"].get("methods", []))
        raw["generator"] = {**raw["generator"], **STAND_IN_GENERATOR,
                            **{t: {**raw["generator"][t], **v} for t, v in STAND_IN_TABLES.items()},
                            **({"steps": MASKED_STEPS} if masked else {})}
    return validate_experiment(raw, f"rehearsal of {spec.name}")
