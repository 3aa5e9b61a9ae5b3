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
from dermsynth.generate.runner import PerClassBackend, make_backend, run_generation
from dermsynth.train.run import load_split
from dermsynth.train.spec import RunSpec

console = Console(stderr=True)


def references_needed(runs: list[RunSpec]) -> pd.DataFrame:
    """The union of the real training subsets of all cells that use synthetic data."""
    from dermsynth.train.run import load_splits, real_subset, split_key

    frames = []
    needs = [r for r in runs if r.synthetic_per_real > 0]
    splits = load_splits(needs)
    for run in needs:
        real = real_subset(run, splits[split_key(run)])
        if run.synthetic_classes is not None:
            real = real[real["label"].isin(run.synthetic_classes)]
        frames.append(real.assign(split="pool"))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames).drop_duplicates("id").reset_index(drop=True)


def preflight(spec: ExperimentSpec, runs: list[RunSpec]) -> None:
    """Catch bad axis values before any training: n_real beyond the pool, missing stores."""
    from dermsynth.train.run import load_splits, real_subset, split_key

    splits = load_splits(runs)
    for run in runs:
        real_subset(run, splits[split_key(run)])  # raises SplitError naming the class and sizes
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


def finetune_stage(gen: GeneratorSpec, base: RunSpec, base_model: str, out: Path, progress: bool = True) -> dict:
    """DreamBooth-style fine-tuning on the training pool: {class or "all": model path(s)}, cached.

    sd: the text-to-image and/or inpainting UNet (authors' settings unless overridden);
    builtin: continued training of the built-in model on one class's images.
    Every image used is listed in OUT/finetuned/finetune_ids.txt for the leakage audit.
    """
    from dermsynth.generate.builtin import train_builtin
    from dermsynth.generate.dreambooth import DreamBoothConfig, finetune_from_split

    split = load_split(base)
    targets = [None] if gen.finetune == "all" else sorted(split.pool["label"].unique())
    root = out / "finetuned"
    models: dict = {}
    used: set[str] = set()
    for label in targets:
        name = "all" if label is None else "".join(ch if ch.isalnum() else "_" for ch in label)
        rows = split.pool if label is None else split.pool[split.pool["label"] == label]
        used |= set(rows["id"])
        if gen.backend == "builtin":
            dest = root / name
            if not (dest / "model" / "dermsynth_builtin.json").exists():
                cached = cache_images(rows, gen.size, Path(base.cache_dir) / "images", progress=False)
                train_builtin(cached.array, list(rows.set_index("id").loc[cached.ids, "label"]), dest,
                              max_steps=gen.finetune_steps or 200, init_from=base_model, progress=progress)
            models[label or "all"] = {"builtin": str(dest / "model")}
            continue
        cfg = DreamBoothConfig(resolution=gen.resolution, lora=gen.lora, max_steps=gen.finetune_steps,
                               **({"lr": gen.finetune_lr} if gen.finetune_lr else {}))
        paths = {}
        wanted = {"t2i": gen.model} if "text-to-image" in gen.methods else {}
        if any(m != "text-to-image" for m in gen.methods):
            wanted["inpaint"] = gen.inpaint_model or gen.model
        for kind, model in wanted.items():
            dest = root / name / kind
            if not (dest / "dreambooth.json").exists():
                console.print(f"[bold]DreamBooth[/] {kind} on {len(rows)} training-pool images ({label or 'all'})")
                finetune_from_split(model, split, dest, label=label, cfg=cfg, progress=progress)
            paths[kind] = str(dest)
        models[label or "all"] = paths
    root.mkdir(parents=True, exist_ok=True)
    (root / "finetune_ids.txt").write_text("\n".join(sorted(used)))
    return models


def _backend_for(gen: GeneratorSpec, paths: dict):
    common = dict(steps=gen.steps, guidance=gen.guidance, strength_inpaint=gen.strength_inpaint,
                  strength_outpaint=gen.strength_outpaint)
    if "builtin" in paths:
        return make_backend("builtin", paths["builtin"], scheduler=gen.scheduler, **common)
    t2i = paths.get("t2i", gen.model)
    return make_backend("sd", t2i, inpaint_model=paths.get("inpaint", gen.inpaint_model), size=gen.resolution,
                        **common)


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
    t0 = time.perf_counter()
    if gen.backend == "builtin":
        model = gen.model or str(builtin_generator(gen, base, out, progress))
        base_paths = {"builtin": model}
    else:
        if not gen.model:
            raise ConfigError("generator.backend = 'sd' needs generator.model (hub id or local folder)")
        model, base_paths = gen.model, {}
    timings["generator_training"] = time.perf_counter() - t0
    trained_on = set(load_split(base).pool["id"]) if gen.backend == "builtin" and not gen.model else set()
    if gen.finetune != "none":
        t0 = time.perf_counter()
        tuned = finetune_stage(gen, base, model, out, progress)
        timings["finetuning"] = time.perf_counter() - t0
        backends = {label: _backend_for(gen, paths) for label, paths in tuned.items()}
        backend = backends["all"] if "all" in backends else PerClassBackend(backends)
        trained_on |= set((out / "finetuned" / "finetune_ids.txt").read_text().split())
    else:
        backend = _backend_for(gen, base_paths)
    if trained_on:  # the images the generator learnt from, for the leakage audit
        store.mkdir(parents=True, exist_ok=True)
        (store / "finetune_ids.txt").write_text("\n".join(sorted(trained_on)))
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


def recognisability_stage(runs: list[RunSpec], store: str | Path, out: Path, progress: bool = True) -> Path | None:
    """Score the store with a classifier trained on the real pool; cached while the store is unchanged.

    The classifier uses the settings of the first cell with synthetic data (backbone, image
    size, epochs), trained on every real pool image without synthetic ones.
    """
    import json

    from dermsynth.analysis.recognisability import recognisability
    from dermsynth.generate.store import read_manifest

    needs = [r for r in runs if r.synthetic_per_real > 0]
    if not needs or not Path(store, "store.json").exists():
        return None
    folder = out / "analysis" / "recognisability"
    n_synthetic = len(read_manifest(store))
    done = folder / "recognisability.json"
    if done.exists() and json.loads(done.read_text()).get("n_synthetic") == n_synthetic:
        return done
    spec = needs[0].model_copy(update={"synthetic_per_real": 0, "use_all_pool": True, "seed": 0})
    table = recognisability(load_split(spec), store, spec, folder, progress=progress)
    for row in table.itertuples():
        console.print(f"recognisability — {row.group}: {100 * row.accuracy:.1f} % of {row.n} "
                      f"(chance {100 * row.chance:.1f} %, p = {row.p_above_chance:.2g})")
    return done
