"""Stages a study needs before training: generator (train or load) → synthetic store.

Each stage is cached on disk, so two grid cells never cause the same generation twice and
a re-run after a crash continues where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from dermsynth.data.cache import cache_images
from dermsynth.errors import ConfigError
from dermsynth.experiments.spec import ExperimentSpec, GeneratorSpec
from dermsynth.generate.runner import make_backend, run_generation
from dermsynth.train.run import load_split
from dermsynth.train.spec import RunSpec

console = Console(stderr=True)


def references_needed(runs: list[RunSpec]) -> pd.DataFrame:
    """The union of the real training subsets of all cells that use synthetic data."""
    from dermsynth.train.run import real_subset

    frames = []
    for run in runs:
        if run.synthetic_per_real == 0:
            continue
        split = load_split(run)
        real = real_subset(run, split)
        if run.synthetic_classes is not None:
            real = real[real["label"].isin(run.synthetic_classes)]
        frames.append(real.assign(split="pool"))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames).drop_duplicates("id").reset_index(drop=True)


def preflight(spec: ExperimentSpec, runs: list[RunSpec]) -> None:
    """Catch bad axis values before any training: n_real beyond the pool, missing stores."""
    from dermsynth.train.run import real_subset

    splits: dict = {}
    for run in runs:
        key = (run.dataset, run.root, str(run.classes), run.label_column, run.demo_n_per_class, run.demo_size,
               run.n_test, run.n_val, run.split_seed, run.stratify)
        if key not in splits:
            splits[key] = load_split(run)
        real_subset(run, splits[key])  # raises SplitError naming the class and sizes
        has_store = bool(run.synthetic_store) and Path(str(run.synthetic_store), "store.json").exists()
        if run.synthetic_per_real > 0 and spec.generator is None and not has_store:
            raise ConfigError(f"synthetic_store={run.synthetic_store!r} is not a synthetic store (no store.json); "
                              "create it with `dermsynth generate` or add a [generator] section")


def builtin_generator(gen: GeneratorSpec, base: RunSpec, out: Path, progress: bool = True) -> Path:
    """Train the built-in generator on the training pool (only), once."""
    from dermsynth.generate.builtin import BuiltinConfig, train_builtin

    model_dir = out / "generator"
    if (model_dir / "model" / "dermsynth_builtin.json").exists():
        return model_dir / "model"
    split = load_split(base)
    pool = split.pool
    cached = cache_images(pool, gen.size, Path(base.cache_dir) / "images", progress=progress)
    console.print(f"[bold]training the built-in generator[/] on {len(pool)} training-pool images "
                  f"({gen.train_steps} steps max{f', {gen.train_minutes} min max' if gen.train_minutes else ''})")
    cfg = BuiltinConfig(size=gen.size, block_out_channels=tuple(gen.block_out_channels))
    train_builtin(cached.array, list(pool.set_index("id").loc[cached.ids, "label"]), model_dir,
                  classes=sorted(split.table["label"].unique()), max_steps=gen.train_steps,
                  max_minutes=gen.train_minutes, config=cfg, progress=progress)
    return model_dir / "model"


def prepare_synthetic(spec: ExperimentSpec, runs: list[RunSpec], out: Path, progress: bool = True,
                      timings: dict | None = None) -> str | None:
    """Make sure the store holds K images per needed reference for every method; return its path.

    ``timings`` (if given) receives the seconds spent training the generator and generating.
    """
    import time

    timings = {} if timings is None else timings
    gen = spec.generator
    needs = [r for r in runs if r.synthetic_per_real > 0]
    if gen is None:
        stores = {r.synthetic_store for r in needs}
        if None in stores:
            raise ConfigError("cells use synthetic data but neither [generator] nor base.synthetic_store is set")
        return None
    store = Path(gen.store) if gen.store else out / "synthetic"
    if not needs:
        return str(store)
    k = max(r.synthetic_per_real for r in needs)
    if k > gen.per_image:
        raise ConfigError(f"grid asks synthetic_per_real={k} but generator.per_image={gen.per_image}; raise per_image")
    base = needs[0]
    if gen.backend == "builtin":
        t0 = time.perf_counter()
        model = gen.model or str(builtin_generator(gen, base, out, progress))
        timings["generator_training"] = time.perf_counter() - t0
        backend = make_backend("builtin", model, steps=gen.steps, guidance=gen.guidance,
                               strength_inpaint=gen.strength_inpaint, strength_outpaint=gen.strength_outpaint,
                               scheduler=gen.scheduler)
    else:
        if not gen.model:
            raise ConfigError("generator.backend = 'sd' needs generator.model (hub id or local folder)")
        backend = make_backend("sd", gen.model, inpaint_model=gen.inpaint_model, steps=gen.steps,
                               guidance=gen.guidance, strength_inpaint=gen.strength_inpaint,
                               strength_outpaint=gen.strength_outpaint)
    t0 = time.perf_counter()
    refs = references_needed(needs)
    methods = sorted({m for r in needs for m in (r.synthetic_methods or gen.methods)})
    for method in methods:
        res = run_generation(backend, refs, method, k, store, batch_size=gen.batch_size,
                             with_skin_type=gen.with_skin_type, progress=progress)
        console.print(f"{method}: generated {res['generated']}, reused {res['skipped']} "
                      f"({res['images_per_second']:.1f} img/s)")
    timings["generation"] = time.perf_counter() - t0
    return str(store)
