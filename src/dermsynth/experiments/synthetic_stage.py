"""The synthetic stage: generator (train or load, fine-tune) → synthetic store.

Each step is cached on disk, so two grid cells never cause the same generation twice and
a re-run after a crash continues where it stopped. Generators learn from the training pool,
or — with ``finetune_on = "subset"`` — only from each (seed, n_real) real subset, so a
classifier's synthetic images never carry information from real images it was not given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import pandas as pd

from dermsynth.data.splits import Split, load_splits
from dermsynth.errors import ConfigError
from dermsynth.experiments.spec import ExperimentSpec, GeneratorSpec
from dermsynth.experiments.stages import references_needed
from dermsynth.generate.backends.registry import PerClassBackend, make_backend
from dermsynth.generate.builtin_model import ConditionedUNet
from dermsynth.generate.builtin_train import BuiltinConfig, train_builtin_on
from dermsynth.generate.dreambooth import DreamBoothConfig, finetune_from_split
from dermsynth.generate.runner import run_generation
from dermsynth.train.spec import RunSpec

log = logging.getLogger(__name__)


def subset_key(gen: GeneratorSpec, run: RunSpec) -> str | None:
    """The real subset a generator learns from when ``finetune_on = "subset"`` (else None: the pool)."""
    if gen.finetune_on == "pool":
        return None
    extra = hashlib.sha256(json.dumps(run.class_n_real, sort_keys=True).encode()).hexdigest()[:6]
    return "pool" if run.use_all_pool else f"n{run.n_real}-s{run.seed}" + (f"-{extra}" if run.class_n_real else "")


def store_for(gen: GeneratorSpec, out: Path, finetune: str | None, subset: str | None = None) -> Path:
    """The store of one generator variant: OUT/synthetic, OUT/synthetic-<finetune> when the experiment
    compares generators, and a sub-store per real subset when generators learn from subsets."""
    if len(gen.finetune_values()) > 1 or subset is not None:
        name = "synthetic-" + "-".join(x for x in (finetune or gen.finetune_values()[0], subset) if x)
        return out / name
    return Path(gen.store) if gen.store else out / "synthetic"


def _is_builtin_model(folder: Path) -> bool:
    return (folder / "model" / ConditionedUNet.config_name).exists()


def builtin_generator(gen: GeneratorSpec, base: RunSpec, split: Split, pool: pd.DataFrame, out: Path,
                      progress: bool = True) -> Path:
    """Train the built-in generator on ``pool`` (training-pool images only), once."""
    model_dir = out / "generator"
    if _is_builtin_model(model_dir):
        return model_dir / "model"
    log.info("training the built-in generator on %d training-pool images (%d steps max%s)", len(pool),
             gen.train_steps, f", {gen.train_minutes} min max" if gen.train_minutes else "")
    cfg = BuiltinConfig(size=gen.size, block_out_channels=tuple(gen.block_out_channels))
    train_builtin_on(pool, model_dir, size=gen.size, cache_dir=base.cache_dir,
                     classes=sorted(split.table["label"].unique()), max_steps=gen.train_steps,
                     max_minutes=gen.train_minutes, config=cfg, progress=progress)
    return model_dir / "model"


def finetune_stage(gen: GeneratorSpec, base: RunSpec, split: Split, pool: pd.DataFrame, base_model: str, out: Path,
                   progress: bool = True) -> dict:
    """DreamBooth-style fine-tuning on the training pool: {class or "all": model path(s)}, cached.

    sd: the text-to-image and/or inpainting UNet (authors' settings unless overridden);
    builtin: continued training of the built-in model on one class's images. Each model
    folder records the images it learnt from; generation carries them into the store.
    """
    targets = [None] if gen.finetune == "all" else sorted(pool["label"].unique())
    root = out / "finetuned"
    models: dict = {}
    for label in targets:
        name = "all" if label is None else "".join(ch if ch.isalnum() else "_" for ch in label)
        rows = pool if label is None else pool[pool["label"] == label]
        if gen.backend == "builtin":
            dest = root / name
            if not _is_builtin_model(dest):
                train_builtin_on(rows, dest, size=gen.size, cache_dir=base.cache_dir,
                                 max_steps=gen.finetune_steps or 200, init_from=base_model, progress=progress)
            models[label or "all"] = {"builtin": str(dest / "model")}
            continue
        cfg = DreamBoothConfig(resolution=gen.resolution, lora=gen.lora, max_steps=gen.finetune_steps,
                               epochs=gen.finetune_epochs,
                               **({"lr": gen.finetune_lr} if gen.finetune_lr else {}))
        paths = {}
        wanted = {"t2i": gen.model} if "text-to-image" in gen.methods else {}
        if any(m != "text-to-image" for m in gen.methods):
            wanted["inpaint"] = gen.inpaint_model or gen.model
        for kind, model in wanted.items():
            dest = root / name / kind
            if not (dest / "dreambooth.json").exists():
                log.info("DreamBooth %s on %d training-pool images (%s)", kind, len(rows), label or "all")
                finetune_from_split(model, split, dest, ids=list(rows["id"]), cfg=cfg, progress=progress)
            paths[kind] = str(dest)
        models[label or "all"] = paths
    return models


def _backend_for(gen: GeneratorSpec, paths: dict):
    common = dict(steps=gen.steps, guidance=gen.guidance, strength_inpaint=gen.strength_inpaint,
                  strength_outpaint=gen.strength_outpaint)
    if "builtin" in paths:
        return make_backend("builtin", paths["builtin"], scheduler=gen.scheduler, **common)
    t2i = paths.get("t2i", gen.model)
    return make_backend("sd", t2i, inpaint_model=paths.get("inpaint", gen.inpaint_model), size=gen.resolution,
                        **common)


def _generator_backend(gen: GeneratorSpec, finetune: str, base: RunSpec, split: Split, pool: pd.DataFrame,
                       out: Path, progress: bool, timings: dict):
    """The backend of one variant: the pretrained (or trained built-in) model, or its fine-tunes."""
    t0 = time.perf_counter()
    if gen.backend == "builtin":
        model = gen.model or str(builtin_generator(gen, base, split, pool, out, progress))
        base_paths = {"builtin": model}
    else:
        if not gen.model:
            raise ConfigError("generator.backend = 'sd' needs generator.model (hub id or local folder)")
        model, base_paths = gen.model, {}
    timings["generator_training"] = timings.get("generator_training", 0.0) + time.perf_counter() - t0
    if finetune == "none":
        return _backend_for(gen, base_paths)
    t0 = time.perf_counter()
    tuned = finetune_stage(gen.model_copy(update={"finetune": finetune}), base, split, pool, model, out, progress)
    timings["finetuning"] = timings.get("finetuning", 0.0) + time.perf_counter() - t0
    backends = {label: _backend_for(gen, paths) for label, paths in tuned.items()}
    return backends["all"] if "all" in backends else PerClassBackend(backends)


def prepare_synthetic(spec: ExperimentSpec, runs: list[RunSpec], out: Path, progress: bool = True,
                      timings: dict | None = None) -> dict[str, str]:
    """Make sure each store holds K images per needed reference for every method.

    Returns {generator variant: store path} (empty without a [generator]); ``timings`` (if
    given) receives the seconds spent training, fine-tuning and generating.
    """
    timings = {} if timings is None else timings
    gen = spec.generator
    needs = [r for r in runs if r.synthetic_per_real > 0]
    if gen is None:
        if any(r.synthetic_store is None for r in needs):
            raise ConfigError("cells use synthetic data but neither [generator] nor base.synthetic_store is set")
        return {}
    if not needs:
        return {}
    k = max(r.synthetic_per_real for r in needs)
    if k > gen.per_image:
        raise ConfigError(f"grid asks synthetic_per_real={k} but generator.per_image={gen.per_image}; raise per_image")
    splits = load_splits(r.split_spec() for r in needs)
    groups: dict[tuple, list[RunSpec]] = {}
    for r in needs:
        groups.setdefault((r.generator_finetune or gen.finetune_values()[0], subset_key(gen, r)), []).append(r)
    stores = {}
    for (finetune, subset), mine in sorted(groups.items(), key=str):
        split = splits[mine[0].split_spec()]
        pool = split.pool if subset is None else references_needed(mine, splits)
        where = out if subset is None else out / "subsets" / subset
        backend = _generator_backend(gen, finetune, mine[0], split, pool, where, progress, timings)
        store = store_for(gen, out, finetune, subset)
        t0 = time.perf_counter()
        refs = references_needed(mine, splits)
        for method in sorted({m for r in mine for m in (r.synthetic_methods or gen.methods)}):
            res = run_generation(backend, refs, method, k, store, split=split, batch_size=gen.batch_size,
                                 with_skin_type=gen.with_skin_type, progress=progress)
            log.info("%s (%s): generated %d, reused %d (%.1f img/s)", method, finetune, res["generated"],
                     res["skipped"], res["images_per_second"])
        timings["generation"] = timings.get("generation", 0.0) + time.perf_counter() - t0
        stores[f"{finetune}/{subset}" if subset else finetune] = str(store)
    return stores


