"""Stages a study needs before training: generator (train or load) → synthetic store.

Each stage is cached on disk, so two grid cells never cause the same generation twice and
a re-run after a crash continues where it stopped.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from dermsynth import io
from dermsynth.audits.recognisability import recognisability
from dermsynth.data.splits import Split, load_split, load_splits
from dermsynth.data.synthetic_store import is_store, store_digest
from dermsynth.errors import ConfigError
from dermsynth.experiments.spec import ExperimentSpec, GeneratorSpec
from dermsynth.generate.backends.registry import PerClassBackend, make_backend
from dermsynth.generate.builtin_model import ConditionedUNet
from dermsynth.generate.builtin_train import BuiltinConfig, train_builtin_on
from dermsynth.generate.dreambooth import DreamBoothConfig, finetune_from_split
from dermsynth.generate.runner import run_generation
from dermsynth.train.run import real_subset
from dermsynth.train.spec import RunSpec

log = logging.getLogger(__name__)


def references_needed(runs: list[RunSpec], splits: dict) -> pd.DataFrame:
    """The union of the real training subsets of all cells that use synthetic data."""
    frames = []
    for run in (r for r in runs if r.synthetic_per_real > 0):
        real = real_subset(run, splits[run.split_spec()])
        if run.synthetic_classes is not None:
            real = real[real["label"].isin(run.synthetic_classes)]
        frames.append(real)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames).drop_duplicates("id").reset_index(drop=True)


def preflight(spec: ExperimentSpec, runs: list[RunSpec]) -> None:
    """Catch bad axis values before any training: n_real beyond the pool, missing stores."""
    splits = load_splits(r.split_spec() for r in runs)
    for run in runs:
        real_subset(run, splits[run.split_spec()])  # raises SplitError naming the class and sizes
        if run.synthetic_per_real > 0 and spec.generator is None and not is_store(run.synthetic_store):
            raise ConfigError(f"synthetic_store={run.synthetic_store!r} is not a synthetic store (no store.json); "
                              "create it with `dermsynth generate` or add a [generator] section")


def _is_builtin_model(folder: Path) -> bool:
    return (folder / "model" / ConditionedUNet.config_name).exists()


def builtin_generator(gen: GeneratorSpec, base: RunSpec, split: Split, out: Path, progress: bool = True) -> Path:
    """Train the built-in generator on the training pool (only), once."""
    model_dir = out / "generator"
    if _is_builtin_model(model_dir):
        return model_dir / "model"
    pool = split.pool
    log.info("training the built-in generator on %d training-pool images (%d steps max%s)", len(pool),
             gen.train_steps, f", {gen.train_minutes} min max" if gen.train_minutes else "")
    cfg = BuiltinConfig(size=gen.size, block_out_channels=tuple(gen.block_out_channels))
    train_builtin_on(pool, model_dir, size=gen.size, cache_dir=base.cache_dir,
                     classes=sorted(split.table["label"].unique()), max_steps=gen.train_steps,
                     max_minutes=gen.train_minutes, config=cfg, progress=progress)
    return model_dir / "model"


def finetune_stage(gen: GeneratorSpec, base: RunSpec, split: Split, base_model: str, out: Path,
                   progress: bool = True) -> dict:
    """DreamBooth-style fine-tuning on the training pool: {class or "all": model path(s)}, cached.

    sd: the text-to-image and/or inpainting UNet (authors' settings unless overridden);
    builtin: continued training of the built-in model on one class's images. Each model
    folder records the images it learnt from; generation carries them into the store.
    """
    targets = [None] if gen.finetune == "all" else sorted(split.pool["label"].unique())
    root = out / "finetuned"
    models: dict = {}
    for label in targets:
        name = "all" if label is None else "".join(ch if ch.isalnum() else "_" for ch in label)
        rows = split.pool if label is None else split.pool[split.pool["label"] == label]
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
                finetune_from_split(model, split, dest, label=label, cfg=cfg, progress=progress)
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


def store_for(gen: GeneratorSpec, out: Path, finetune: str | None) -> Path:
    """The store of one generator variant: OUT/synthetic, or OUT/synthetic-<finetune> when the
    experiment compares pretrained and fine-tuned generators."""
    if len(gen.finetune_values()) > 1:
        return out / f"synthetic-{finetune}"
    return Path(gen.store) if gen.store else out / "synthetic"


def _generator_backend(gen: GeneratorSpec, finetune: str, base: RunSpec, split: Split, out: Path, progress: bool,
                       timings: dict):
    """The backend of one variant: the pretrained (or trained built-in) model, or its fine-tunes."""
    t0 = time.perf_counter()
    if gen.backend == "builtin":
        model = gen.model or str(builtin_generator(gen, base, split, out, progress))
        base_paths = {"builtin": model}
    else:
        if not gen.model:
            raise ConfigError("generator.backend = 'sd' needs generator.model (hub id or local folder)")
        model, base_paths = gen.model, {}
    timings["generator_training"] = timings.get("generator_training", 0.0) + time.perf_counter() - t0
    if finetune == "none":
        return _backend_for(gen, base_paths)
    t0 = time.perf_counter()
    tuned = finetune_stage(gen.model_copy(update={"finetune": finetune}), base, split, model, out, progress)
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
    stores = {}
    for finetune in gen.finetune_values():
        mine = [r for r in needs if (r.generator_finetune or gen.finetune_values()[0]) == finetune]
        if not mine:
            continue
        split = splits[mine[0].split_spec()]
        backend = _generator_backend(gen, finetune, mine[0], split, out, progress, timings)
        store = store_for(gen, out, finetune)
        t0 = time.perf_counter()
        refs = references_needed(mine, splits)
        for method in sorted({m for r in mine for m in (r.synthetic_methods or gen.methods)}):
            res = run_generation(backend, refs, method, k, store, split=split, batch_size=gen.batch_size,
                                 with_skin_type=gen.with_skin_type, progress=progress)
            log.info("%s (%s): generated %d, reused %d (%.1f img/s)", method, finetune, res["generated"],
                     res["skipped"], res["images_per_second"])
        timings["generation"] = timings.get("generation", 0.0) + time.perf_counter() - t0
        stores[finetune] = str(store)
    return stores


def recognisability_stage(runs: list[RunSpec], store: str | Path, folder: Path, progress: bool = True) -> Path | None:
    """Score the store with a classifier trained on the real pool, into ``folder``.

    Cached while the store, the split and the classifier's settings are unchanged (their
    digests are the cache key). The classifier uses the settings of the first cell with
    synthetic data (backbone, image size, epochs), trained on every real pool image.
    """
    needs = [r for r in runs if r.synthetic_per_real > 0]
    if not needs or not is_store(store):
        return None
    spec = needs[0].model_copy(update={"synthetic_per_real": 0, "use_all_pool": True, "seed": 0,
                                       "synthetic_fingerprint": None, "data_digest": None})
    split = load_split(spec.split_spec())
    key = f"{store_digest(store)}:{split.digest()}:{spec.run_id()}"
    done = folder / "recognisability.json"
    if done.exists() and io.read_json(done).get("cache_key") == key:
        return done
    table = recognisability(split, store, spec, folder, progress=progress)
    io.write_json(done, {**io.read_json(done), "cache_key": key})
    for row in table.itertuples():
        log.info("recognisability — %s: %.1f %% of %d (chance %.1f %%, p = %.2g)", row.group, 100 * row.accuracy,
                 row.n, 100 * row.chance, row.p_above_chance)
    return done
