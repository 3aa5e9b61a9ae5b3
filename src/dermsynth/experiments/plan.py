"""``dermsynth experiment plan``: what a study will cost, before anything runs.

Counts come from the config (grid cells, generator variants, methods, K) and the data's
class sizes (read from disk when the data is there, else the published sizes of F17k-9 and
DDI, marked as such). Device-hours come from a throughput table: measured on this project's
2-core CPU, approximate public figures for GPUs (marked), or the user's own measurements
(``--throughput FILE``: JSON of the same keys, e.g. from ``bench/gpu_check.py``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from dermsynth import files
from dermsynth.data.fitzpatrick import F17K9
from dermsynth.errors import SplitError
from dermsynth.experiments.spec import ExperimentSpec, cells
from dermsynth.train.allocation import BALANCING, BY_ERROR

# Images (or steps) per second. "cpu": measured here (AMD EPYC, 2 threads; README/bench).
# GPU rows are approximate public figures, to be replaced by a measurement of your own.
THROUGHPUT = {
    "cpu": {"source": "measured on the 2-core development CPU", "sd_img_s": None, "dreambooth_steps_s": None,
            "builtin_img_s": 12.6, "builtin_train_steps_s": 2.7, "classifier_img_s": {"tf_efficientnetv2_m": 3.0,
                                                                                      "test_": 500.0}},
    "a100": {"source": "approximate public figures (fp16, batch 8), not measured here", "sd_img_s": 1.0,
             "dreambooth_steps_s": 2.0, "builtin_img_s": None, "builtin_train_steps_s": None,
             "classifier_img_s": {"tf_efficientnetv2_m": 600.0, "test_": 20000.0}},
    "h100": {"source": "approximate public figures (fp16, batch 8), not measured here", "sd_img_s": 2.0,
             "dreambooth_steps_s": 4.0, "builtin_img_s": None, "builtin_train_steps_s": None,
             "classifier_img_s": {"tf_efficientnetv2_m": 1200.0, "test_": 40000.0}},
}
# Published class sizes when the data is not on disk (SPEC §1: F17k-9 before cleaning; DDI 656 images).
F17K9_SIZES = dict(zip(F17K9, [624, 480, 452, 446, 398, 337, 326, 324, 312], strict=True))
DDI_SIZES = {"benign": 485, "malignant": 171}
PNG_BYTES = {512: 400_000, 32: 3_000}


@dataclass
class ClassSizes:
    sizes: dict[str, int]
    source: str


def class_sizes(spec: ExperimentSpec) -> ClassSizes:
    """Images per class: from the data when it loads, else published sizes."""
    from dermsynth.data.registry import load_dataset

    b = spec.base
    try:
        table = load_dataset(b.get("dataset", "demo"), b.get("root"), classes=b.get("classes"),
                             n_per_class=b.get("demo_n_per_class", 200), size=b.get("demo_size", 64),
                             label_column=b.get("label_column", "label"))
        return ClassSizes(table["label"].value_counts().to_dict(), "counted on disk")
    except Exception:  # the data is elsewhere (a cluster): fall back to the published sizes
        if b.get("dataset") == "ddi":
            return ClassSizes(dict(DDI_SIZES), "published DDI sizes (data not found here)")
        return ClassSizes(dict(F17K9_SIZES), "published F17k-9 sizes (data not found here)")


def _classifier_rate(table: dict, backbone: str) -> float | None:
    rates = table.get("classifier_img_s") or {}
    return next((v for k, v in rates.items() if backbone.startswith(k)), None)


def plan(spec: ExperimentSpec, device: str = "a100", throughput: dict | None = None) -> pd.DataFrame:
    """One row per stage: what runs, how much, device-hours (None where no rate is known)."""
    rates = throughput or THROUGHPUT[device]
    sizes = class_sizes(spec)
    runs = cells(spec)
    n_cls = len(sizes.sizes)
    per_stratum = spec.base.get("n_test", 40) + spec.base.get("n_val", 40)
    total = sum(sizes.sizes.values())
    held = per_stratum * (3 if spec.base.get("stratify") == "skin_group" else n_cls)  # three skin-type groups
    pool = {c: max(0, n - round(held * n / total)) for c, n in sizes.sizes.items()}
    _check_pool(runs, pool if spec.base.get("stratify") == "skin_group" else
                {c: n - per_stratum for c, n in sizes.sizes.items()}, sizes.source)
    rows = []
    gen = spec.generator
    synthetic = [r for r in runs if r.synthetic_per_real > 0]
    if gen is not None and synthetic:
        variants = gen.finetune_values()
        kinds = (["t2i"] if "text-to-image" in gen.methods else []) + (
            ["inpaint"] if any(m != "text-to-image" for m in gen.methods) else [])
        tuned = [v for v in variants if v != "none"]
        n_models = sum(n_cls if v == "per-class" else 1 for v in tuned) * len(kinds)
        steps = sum(math.ceil(n / 4) for n in pool.values()) * gen.dreambooth.epochs * len(kinds) * len(tuned)
        steps = _finetune_steps(gen) * n_models if _finetune_steps(gen) else steps
        rate = rates.get("dreambooth_steps_s") if gen.backend == "sd" else rates.get("builtin_train_steps_s")
        if gen.backend == "builtin" and not gen.builtin.model:
            train_steps = gen.builtin.train_steps
            rows.append(_row("train built-in generator", f"1 model, {train_steps:,} steps", train_steps,
                             rates.get("builtin_train_steps_s"), "steps", tasks=1))
        seeds = len(spec.seed_list())
        refs = sum(pool.values()) if any(r.use_all_pool for r in synthetic) else \
            sum(min(pool[c], seeds * max(r.n_real for r in synthetic)) for c in pool)
        passes = sum(2 if m == "in-then-outpaint" else 1 for m in gen.methods)
        per_method = refs * gen.per_image * len(variants)
        what = f"{refs:,} references × {gen.per_image} × {len(gen.methods)} methods × {len(variants)} generators"
        learn, stores = "", len(variants)
        if gen.finetune_on == "subset":  # a generator per run's real subset: more, smaller models
            n_models, steps, per_method, stores = subset_generators(gen, synthetic, pool, len(kinds))
            learn = " (each on one run's real subset)"
            what = f"{per_method:,} per method × {len(gen.methods)} methods in {stores} subset stores"
        if tuned:
            rows.append(_row("fine-tune generators", f"{n_models} models{learn}, {steps:,} steps", steps, rate,
                             "steps", tasks=max(1, n_models // len(kinds))))
        if any(r.synthetic_allocation in BALANCING for r in synthetic):
            what += "; at most: an allocation's quotas are made, not the cap for every reference"
        images, work = per_method * len(gen.methods), per_method * passes
        rate = rates.get("sd_img_s") if gen.backend == "sd" else rates.get("builtin_img_s")
        size = gen.sd.resolution if gen.backend == "sd" else gen.builtin.size
        rows.append(_row("generate", f"{images:,} images ({what})", work, rate, "images",
                         disk=images * PNG_BYTES.get(size, 100_000), tasks=stores * n_cls))
    rate = _classifier_rate(rates, runs[0].backbone)
    pilots = by_error_pilots(runs)
    seen = sum((sum(pool.values()) * r.repeat_real * (1 + r.synthetic_per_real) if r.use_all_pool
                else _train_images(r, n_cls)) * r.max_epochs for r in [*runs, *pilots])
    weights = checkpoint_bytes(runs[0], n_cls) * sum(r.save_checkpoint for r in runs)
    also = f" + {len(pilots)} real-only pilots of by_error cells" if pilots else ""
    rows.append(_row("train classifiers", f"{len(runs)} runs{also}, ≤ {seen:,} images seen (max_epochs; early "
                     "stopping usually ends sooner)", seen, rate, "images", disk=weights, tasks=len(runs)))
    if spec.sequential is not None:  # the looks' seeds: at most, every look reached
        planned = len(spec.seed_list())
        added = (spec.sequential.max_seeds or 2 * planned) - planned
        grown = 2 if spec.main_comparison is not None else len(runs) // planned  # its 2 cells, or every cell
        rows.append(_row("train classifiers (sequential looks)", f"at most {grown * added} more runs: {added} seeds "
                         f"for each of {grown} cells" + (" (the main comparison's)" if grown == 2 else ""),
                         seen / len(runs) * grown * added, rate, "images", tasks=grown * added))
    if gen is not None and spec.recognisability and synthetic:
        seen = sum(pool.values()) * runs[0].max_epochs
        rows.append(_row("recognisability check", "1 classifier on the real pool", seen, rate, "images",
                         tasks=len(variants)))
    settings = sorted({(r.synthetic_filter, r.filter_keep) for r in synthetic if r.synthetic_filter != "none"})
    if gen is not None and settings:  # per store: a classifier on the pool, then every image scored twice
        stores = len(gen.finetune_values())
        seen = stores * sum(pool.values()) * runs[0].max_epochs + 2 * images
        rows.append(_row("filter synthetic images", f"{stores} classifier(s) on the real pool, {images:,} images "
                         f"scored, {len(settings)} filtered views", seen, rate, "images", tasks=stores))
    out = pd.DataFrame(rows)
    out.attrs.update(device=device, source=rates.get("source", "user file"), class_sizes=sizes.source)
    return out


def by_error_pilots(runs: list) -> list:
    """The real-only pilots the by_error cells train (one per pilot run id)."""
    by_error = [r for r in runs if r.synthetic_per_real > 0 and r.synthetic_allocation in BY_ERROR]
    if not by_error:
        return []
    from dermsynth.train.pilot import pilot_spec  # imports torch: only for a study that has pilots

    return list({p.run_id(): p for p in map(pilot_spec, by_error)}.values())


def subset_generators(gen, synthetic: list, pool: dict[str, int], kinds: int) -> tuple[int, int, int, int]:
    """Models, fine-tune steps, images to generate and stores when generators learn from each run's
    real subset (``finetune_on = "subset"``: one store per variant and subset, holding as many images
    per reference as its cells draw — as synthetic_stage makes them)."""
    subsets: dict[tuple, dict[str, int]] = {}
    per_ref: dict[tuple, int] = {}
    for r in synthetic:
        variant = r.generator_finetune or gen.finetune_values()[0]
        key = (variant, r.use_all_pool, r.n_real, r.seed, json.dumps(r.class_n_real, sort_keys=True))
        counts = {c: pool[c] if r.use_all_pool else min(pool[c], r.class_n_real.get(c, r.n_real))
                  for c in (r.synthetic_classes or pool) if c in pool}
        subsets.setdefault(key, {}).update(counts)
        k = r.synthetic_per_real if r.synthetic_filter == "none" else math.ceil(r.synthetic_per_real / r.filter_keep)
        per_ref[key] = max(per_ref.get(key, 0), k)
    models = steps = 0
    for (variant, *_), counts in subsets.items():
        if variant == "none":
            continue
        sizes = list(counts.values()) if variant == "per-class" else [sum(counts.values())]
        models += len(sizes) * kinds
        steps += (_finetune_steps(gen) * len(sizes) if _finetune_steps(gen) else
                  sum(math.ceil(n / 4) for n in sizes) * gen.dreambooth.epochs) * kinds
    return models, steps, sum(sum(c.values()) * per_ref[key] for key, c in subsets.items()), len(subsets)


def _finetune_steps(gen) -> int | None:
    """Fine-tune steps per model when the config fixes them (else DreamBooth's epochs decide)."""
    return gen.builtin.finetune_steps if gen.backend == "builtin" else gen.dreambooth.max_steps


def _check_pool(runs, pool: dict[str, int], source: str) -> None:
    """Refuse what `experiment run` would refuse: an n_real beyond a class's training pool
    (a plan must not price runs that cannot run)."""
    for run in runs:
        if run.use_all_pool:
            continue
        for cls, n in pool.items():
            want = run.class_n_real.get(str(cls), run.n_real)
            if want > n:
                raise SplitError(f"n_real={want} exceeds the training pool of class {cls!r} (≈ {n} images after "
                                 f"the test and validation sets; {source}); `experiment run` would refuse it: "
                                 "lower n_real in the config")


def checkpoint_bytes(run, n_cls: int) -> int:
    """Disk for one run's saved weights (the backbone built with random weights: only its size
    matters), after ``checkpoint_max_mb`` (fp16 over the budget, nothing over twice it)."""
    from dermsynth.models.backbones import create_backbone

    state = create_backbone(run.backbone, n_cls, pretrained=False).state_dict()
    size = sum(t.numel() * t.element_size() for t in state.values())
    budget = run.checkpoint_max_mb * 2**20 if run.checkpoint_max_mb else None
    if budget is None or size <= budget:
        return size
    return size // 2 if size / 2 <= budget else 0


def _train_images(run, n_cls: int) -> int:
    per_class = [run.class_n_real.get(str(i), run.n_real) for i in range(n_cls)] if not run.class_n_real \
        else [run.n_real] * (n_cls - len(run.class_n_real)) + list(run.class_n_real.values())
    real = sum(per_class)
    return real * run.repeat_real * (1 + run.synthetic_per_real)


def _row(stage: str, what: str, work: float, rate: float | None, unit: str, disk: int = 0, tasks: int = 1) -> dict:
    """A stage's row; ``tasks`` is how many tasks it runs as (under Slurm: its array's size), and
    ``hours_per_task`` their mean length (what a task's time limit must cover)."""
    hours = work / rate / 3600 if rate else None
    return {"stage": stage, "what": what, "work": work, "unit": unit, "rate_per_s": rate,
            "device_hours": None if hours is None else round(hours, 2), "disk_gb": round(disk / 1e9, 1),
            "tasks": tasks, "hours_per_task": None if hours is None else round(hours / tasks, 3)}


def planned_task_minutes(spec: ExperimentSpec, device: str) -> dict[str, float]:
    """{stage: minutes of one of its tasks} on ``device``, for checking a Slurm time limit."""
    table = plan(spec, device)
    return {row.stage: row.hours_per_task * 60 for row in table.itertuples() if pd.notna(row.hours_per_task)}


def load_throughput(path) -> dict:
    """A user's measured rates (same keys as a THROUGHPUT row)."""
    return {"source": f"measured ({path})", **files.read_json(path)}
