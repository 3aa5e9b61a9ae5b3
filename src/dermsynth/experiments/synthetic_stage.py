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
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from dermsynth import files
from dermsynth.data.splits import Split, load_split, load_splits
from dermsynth.errors import ConfigError
from dermsynth.experiments.generator_spec import GeneratorSpec, identity_view
from dermsynth.experiments.graph import Task
from dermsynth.experiments.spec import ExperimentSpec
from dermsynth.experiments.stages import references_needed
from dermsynth.experiments.synthetic_needs import check_skin_type_kept, most_needed, reference_counts
from dermsynth.experiments.task_payloads import (
    FinetunePayload,
    Generated,
    GeneratePayload,
    GeneratorModels,
    TrainGeneratorPayload,
)
from dermsynth.field_roles import stage_key
from dermsynth.generate.backends.registry import make_backend
from dermsynth.generate.builtin.config import BUILTIN_FINETUNE, BUILTIN_TRAINING
from dermsynth.generate.builtin.model import ConditionedUNet, model_fingerprint
from dermsynth.generate.builtin.train import train_builtin_on
from dermsynth.generate.dreambooth import finetune_from_split
from dermsynth.generate.dreambooth_config import DREAMBOOTH, DreamBoothConfig
from dermsynth.generate.runner import run_generation
from dermsynth.train.allocation import BALANCING
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


STAGE_SETTINGS = "stage_settings.json"


def make_once(folder: Path, done: bool, settings: dict, make: Callable[[], object],
              earlier: dict[str, tuple[str | None, object]] | None = None) -> None:
    """Run ``make`` unless ``folder`` holds a finished stage made with ``settings``; then record
    them. A finished stage made with other settings (or unknown ones) is a clear refusal,
    never a silent reuse. ``earlier`` ({key: (its former name, its default)}) reads a record
    made before a key existed or was renamed: a key it lacks matches at its default."""
    settings = json.loads(json.dumps(settings))
    if done:
        path = folder / STAGE_SETTINGS
        old = files.read_json(path) if path.exists() else None
        changed = sorted(k for k in settings
                         if old is None or _recorded(old, k, earlier or {}, settings[k]) != settings[k])
        if changed:
            raise ConfigError(f"{folder} was made with other settings ({', '.join(changed)} differ); delete it, or "
                              "run into another --out, to make it again with these")
        return
    make()
    files.write_json(folder / STAGE_SETTINGS, settings)


def _recorded(old: dict, key: str, earlier: dict, now: object) -> object:
    """What a stage's record says ``key`` was: the key itself, else its former name; a key the
    record lacks under both names reads as its default when it is new (it could not be set
    then), and as ``now`` when the old spelling could set it but the record did not keep it
    (nothing to compare: DreamBooth's GPU options were not in its old key)."""
    former, default = earlier.get(key, (None, ...))
    if key in old:
        return old[key]
    if former in old:
        return old[former]
    return now if former else default


def _key(config, rows: pd.DataFrame, stage: str, make: Callable[[], object], **extra) -> tuple:
    """make_once's arguments after ``done``: the stage's reuse key (the fields of the backend's
    table declared with the stage's tag, the images it learns from, ``extra``: the model it
    starts from), ``make``, and how records made before a field existed read."""
    ids = hashlib.sha256("\n".join(sorted(rows["id"].astype(str))).encode()).hexdigest()[:16]
    settings, earlier = stage_key(config, stage)
    return {**settings, "training_images": ids, **extra}, make, earlier


def builtin_generator(gen: GeneratorSpec, base: RunSpec, split: Split, pool: pd.DataFrame, out: Path) -> Path:
    """Train the built-in generator on ``pool`` (training-pool images only), once."""
    model_dir = out / "generator"

    def train() -> None:
        log.info("training the built-in generator on %d training-pool images (%d steps max%s)", len(pool),
                 cfg.train_steps, f", {cfg.train_minutes} min max" if cfg.train_minutes else "")
        train_builtin_on(pool, model_dir, size=cfg.size, cache_dir=base.cache_dir,
                         classes=sorted(split.table["label"].unique()), max_steps=cfg.train_steps,
                         max_minutes=cfg.train_minutes, config=cfg)

    cfg = gen.builtin
    make_once(model_dir, _is_builtin_model(model_dir), *_key(cfg, pool, BUILTIN_TRAINING, train))
    return model_dir / "model"


def finetune_one(gen: GeneratorSpec, base: RunSpec, split: Split, rows: pd.DataFrame, label: str | None,
                 base_model: str, out: Path) -> GeneratorModels:
    """DreamBooth-style fine-tuning of one model (one class, or all) on training-pool rows; cached.

    sd: the text-to-image and/or inpainting UNet (authors' settings unless overridden);
    builtin: continued training of the built-in model. Each model folder records the images
    it learnt from; generation carries them into the store. Returns the model folder(s).
    """
    name = "all" if label is None else "".join(ch if ch.isalnum() else "_" for ch in label)
    if gen.backend == "builtin":
        dest = out / "finetuned" / name
        cfg = gen.builtin
        make_once(dest, _is_builtin_model(dest),
                  *_key(cfg, rows, BUILTIN_FINETUNE,
                        lambda: train_builtin_on(rows, dest, size=cfg.size, cache_dir=base.cache_dir,
                                                 max_steps=cfg.finetune_steps or 200, init_from=base_model,
                                                 config=cfg),
                        base_model=model_fingerprint(base_model)))
        return GeneratorModels(builtin=str(dest / "model"))
    cfg = gen.finetune_config()
    wanted = {"t2i": gen.sd.model} if "text-to-image" in gen.methods else {}
    if any(m != "text-to-image" for m in gen.methods):
        wanted["inpaint"] = gen.sd.inpaint_model or gen.sd.model
    paths = {}
    for kind, model in wanted.items():
        dest = out / "finetuned" / name / kind
        make_once(dest, (dest / "dreambooth.json").exists(),
                  *_key(cfg, rows, DREAMBOOTH,
                        lambda model=model, dest=dest, kind=kind: _dreambooth(model, split, dest, rows, cfg, kind,
                                                                              label),
                        base_model=model))
        paths[kind] = str(dest)
    return GeneratorModels(**paths)


def _dreambooth(model: str, split: Split, dest: Path, rows: pd.DataFrame, cfg: DreamBoothConfig, kind: str,
                label: str | None) -> None:
    log.info("DreamBooth %s on %d training-pool images (%s)", kind, len(rows), label or "all")
    finetune_from_split(model, split, dest, ids=list(rows["id"]), cfg=cfg)


def _backend_for(gen: GeneratorSpec, models: GeneratorModels):
    common = dict(steps=gen.steps, guidance=gen.guidance, strength_inpaint=gen.strength_inpaint,
                  strength_outpaint=gen.strength_outpaint)
    if models.builtin:
        return make_backend("builtin", models.builtin, scheduler=gen.builtin.scheduler,
                            precision=gen.builtin.sampling_precision, **common)
    return make_backend("sd", models.t2i or gen.sd.model, inpaint_model=models.inpaint or gen.sd.inpaint_model,
                        size=gen.sd.resolution, **common)


def _rows(split: Split, ids: list[str]) -> pd.DataFrame:
    return split.table[split.table["id"].isin(set(ids))].reset_index(drop=True)


def task_train_generator(payload: TrainGeneratorPayload) -> GeneratorModels:
    """The built-in generator trained on its pool (or subset)."""
    split = load_split(payload.base.split_spec())
    model = builtin_generator(payload.gen, payload.base, split, _rows(split, payload.pool), Path(payload.out))
    return GeneratorModels(builtin=str(model))


def task_finetune(payload: FinetunePayload, base_model: GeneratorModels | None = None) -> GeneratorModels:
    """One fine-tuned model (a class's, or all classes'), from the trained built-in generator
    (``base_model``) or the configured model."""
    split = load_split(payload.base.split_spec())
    start = base_model.builtin if base_model is not None else payload.gen.given_model()
    return finetune_one(payload.gen, payload.base, split, _rows(split, payload.rows), payload.label, start,
                        Path(payload.out))


def task_generate(payload: GeneratePayload, models: GeneratorModels | None = None) -> Generated:
    """K images per reference (or each reference's count of each method), for every method, with one
    model (a class's, or the shared one)."""
    gen, split = payload.gen, load_split(payload.base.split_spec())
    if models is None:  # a given model: an already trained built-in one, or Stable Diffusion's
        models = GeneratorModels(builtin=gen.builtin.model) if gen.backend == "builtin" else GeneratorModels()
    backend = _backend_for(gen, models)
    refs = _rows(split, payload.refs)
    made = {}
    for method in payload.methods:
        per_image = payload.k if payload.counts is None else payload.counts[method]
        if payload.counts is not None and not any(per_image.values()):
            continue  # no cell draws this class's images of this method
        res = run_generation(backend, refs, method, per_image, payload.store, split=split,
                             batch_size=gen.batch_size, with_skin_type=gen.with_skin_type,
                             store_identity=(payload.family, store_identity(gen, payload.family)))
        made[method] = res.generated
    return Generated(images=made)


def store_identity(gen: GeneratorSpec, family: str) -> str:
    """One store, one generator family: the generator settings (every field but the operational
    ones, as declared), the variant and what it learnt from (the models inside it — one per
    class — are recorded per image)."""
    return hashlib.sha256(json.dumps([identity_view(gen), family], sort_keys=True).encode()).hexdigest()[:16]


def synthetic_tasks(spec: ExperimentSpec, runs: list[RunSpec], out: Path) -> tuple[list[Task], dict[str, list[str]]]:
    """The fine-tune and generation tasks that fill every store the cells need.

    Returns the tasks (in dependency order) and {store path: names of its generation tasks}.
    Generation is split per class, so a class's generation starts when its own model is ready.
    """
    gen = spec.generator
    needs = [r for r in runs if r.synthetic_per_real > 0]
    if gen is None:
        if any(r.synthetic_store is None for r in needs):
            raise ConfigError("cells use synthetic data but neither [generator] nor base.synthetic_store is set")
        return [], {}
    if not needs:
        return [], {}
    check_skin_type_kept(gen, needs)
    splits = load_splits(r.split_spec() for r in needs)
    groups: dict[tuple, list[RunSpec]] = {}
    for r in needs:
        groups.setdefault((r.generator_finetune or gen.finetune_values()[0], subset_key(gen, r)), []).append(r)
    # what each store's cells draw (imbalance: 7 per real at 25 images, 1 at 100; a balancing
    # allocation: each reference's quota), and the most of all
    need_of = {key: reference_counts(mine, splits, gen.methods) for key, mine in groups.items()}
    k = max(most_needed(n) for n in need_of.values())
    if k > gen.per_image:
        asked = max(r.synthetic_per_real for r in needs)
        why = "" if k == asked else f" and a filter keeping a share of them needs {k} to choose from"
        raise ConfigError(f"grid asks synthetic_per_real={asked}{why} but generator.per_image={gen.per_image}; "
                          "raise per_image")
    if gen.backend == "sd" and not gen.sd.model:
        raise ConfigError("generator.backend = 'sd' needs [generator.sd] model (hub id or local folder)")
    tasks: list[Task] = []
    stores: dict[str, list[str]] = {}
    names = set()
    for (finetune, subset), mine in sorted(groups.items(), key=str):
        split = splits[mine[0].split_spec()]
        pool = split.pool if subset is None else references_needed(mine, splits)
        where = out if subset is None else out / "subsets" / subset
        tag = subset or "pool"
        common = {"gen": gen.model_copy(update={"finetune": finetune}),
                  "base": mine[0].model_copy(update={"synthetic_fingerprint": None}),
                  "out": str(where), "family": f"{gen.backend}:{finetune}:{tag}"}
        base_task = None
        if gen.backend == "builtin" and not gen.builtin.model:
            base_task = f"train-generator/{tag}"
            if base_task not in names:
                tasks.append(Task(base_task, "train-generator", task_train_generator,
                                  TrainGeneratorPayload(**common, pool=list(pool["id"])), gpus=1))
                names.add(base_task)
        refs = references_needed(mine, splits)
        store = str(store_for(gen, out, finetune, subset))
        need = need_of[(finetune, subset)]
        k_store = k if subset is None else most_needed(need)
        sized = any(r.synthetic_allocation in BALANCING for r in mine)  # else every reference gets k_store
        methods = sorted({m for r in mine for m in (r.synthetic_methods or gen.methods)})
        labels = sorted(refs["label"].unique())
        for label in labels:
            model_task = base_task
            if finetune != "none":
                target = label if finetune == "per-class" else None
                model_task = f"finetune/{finetune}/{tag}/{target or 'all'}"
                if model_task not in names:
                    rows = pool if target is None else pool[pool["label"] == target]
                    tasks.append(Task(model_task, "finetune", task_finetune,
                                      FinetunePayload(**common, rows=list(rows["id"]), label=target),
                                      inputs={"base_model": base_task} if base_task else {}, gpus=1))
                    names.add(model_task)
            name = f"generate/{finetune}/{tag}/{label}"
            mine_refs = [str(i) for i in refs.loc[refs["label"] == label, "id"]]
            counts = {m: {i: need.get(m, {}).get(i, 0) for i in mine_refs} for m in methods} if sized else None
            tasks.append(Task(name, "generate", task_generate,
                              GeneratePayload(**common, refs=mine_refs, methods=methods, k=k_store, store=store,
                                              counts=counts),
                              inputs={"models": model_task} if model_task else {}, gpus=1))
            names.add(name)
            stores.setdefault(store, []).append(name)
    return tasks, stores
