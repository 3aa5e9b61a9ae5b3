"""``[generator]``: how a study's synthetic store is made, with one typed table per backend.

    [generator]                    # what every backend shares
    backend = "builtin"
    methods = ["inpaint", "text-to-image"]
    per_image = 2
    [generator.builtin]            # generate/builtin/config.py: BuiltinConfig, handed to training as is
    block_out_channels = [32, 64, 64]
    train_steps = 450
    [generator.sd]                 # generate/backends/sd_config.py: which models, which resolution
    [generator.dreambooth]         # generate/dreambooth_config.py: DreamBoothConfig, handed to the fine-tune

A table *is* its backend's config: a new option is a field there and nowhere else, where one
flat list of every backend's fields, mapped by hand into each backend's config, would need each
new option added in several places.

Older configs spelled those settings flat (``train_steps = 450`` in ``[generator]``). They still
load: each flat key goes to the table field that declares it as ``formerly`` (the active
backend's table first, then DreamBooth's, then the other backend's), with the flat spelling's
own defaults where they differed, and a deprecation warning names the new table. A store's
identity is computed over the same flat view (:func:`identity_view`), so stores and run ids of
studies made before the tables are kept.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dermsynth.errors import ConfigDeprecationWarning, ConfigError
from dermsynth.field_roles import OPERATIONAL, SETTING, declaration, default_value, fields_with, role
from dermsynth.generate.backends.registry import DEFAULT_STEPS
from dermsynth.generate.backends.sd_config import StableDiffusionConfig
from dermsynth.generate.builtin.config import BuiltinConfig
from dermsynth.generate.dreambooth_config import DreamBoothConfig

FinetuneMode = Literal["none", "all", "per-class"]
TABLES: dict[str, type[BaseModel]] = {"builtin": BuiltinConfig, "sd": StableDiffusionConfig,
                                      "dreambooth": DreamBoothConfig}


def table_order(backend: str) -> list[str]:
    """Where a flat key is looked for, and the order of the identity view: the active backend's
    table, then DreamBooth's, then the other backend's."""
    other = "sd" if backend == "builtin" else "builtin"
    return [backend, "dreambooth", other]


def _formerly(model: type[BaseModel], name: str) -> str | None:
    return declaration(model, name).get("formerly")


def read_flat_keys(data: dict, where: str = "generator") -> dict:
    """A ``[generator]`` written in the flat spelling, as tables (see the module docstring). One
    with no backend table at all is the flat spelling too, even when it sets none of the moved
    keys (``backend`` and ``per_image`` only): it keeps the flat spelling's defaults."""
    flat = {k: v for k, v in data.items() if k not in GeneratorSpec.model_fields}
    moved = {}
    tables = {t: dict(data.get(t) or {}) for t in TABLES}
    for key, value in flat.items():
        target = next(((t, f) for t in table_order(data.get("backend", "builtin")) for f in TABLES[t].model_fields
                       if _formerly(TABLES[t], f) == key), None)
        if target is None:
            continue  # not a former field: left for pydantic's "unknown field" (with "did you mean")
        table, name = target
        if name in tables[table]:
            raise ConfigError(f"{where}: {key} is set both flat and as [generator.{table}] {name}; keep the table's")
        tables[table][name] = value
        moved[key] = f"[generator.{table}] {name}"
    if not moved and any(t in data for t in TABLES):
        return data
    for table, model in TABLES.items():  # the flat spelling's defaults, where they differ from the tables'
        for name in model.model_fields:
            old = declaration(model, name).get("formerly_default", ...)
            if old is not ... and name not in tables[table]:
                tables[table][name] = old
    if not moved:
        return {**data, **{t: v for t, v in tables.items() if v}}
    message = ("flat [generator] keys are deprecated; write them in their backend's table: "
               + "; ".join(f"{k} → {v}" for k, v in moved.items())
               + ". `dermsynth experiment show CONFIG` prints the config in the new spelling.")
    warnings.warn(message, ConfigDeprecationWarning, stacklevel=2)
    kept = {k: v for k, v in data.items() if k not in moved}
    return {**kept, **{t: v for t, v in tables.items() if v or t in data}}


class GeneratorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Which generator makes the images: "builtin" (a small class-conditional pixel-space diffusion UNet trained
    # here on the training pool, CPU-friendly) or "sd" (Stable Diffusion through diffusers, [generator.sd]).
    backend: Literal["builtin", "sd"] = "builtin"
    store: str | None = role(OPERATIONAL, None)  # default: OUT/synthetic
    # The generation methods (text-to-image, inpaint, outpaint, in-then-outpaint) made for cells that name no
    # synthetic_methods; with sd they also decide which pipelines DreamBooth fine-tunes (text-to-image, inpainting).
    methods: list[str] = Field(default_factory=lambda: ["inpaint", "in-then-outpaint", "text-to-image"])
    # The most synthetic images per reference and method the study may draw (≥ 1): a grid that needs more
    # (synthetic_per_real, or that / filter_keep with a filter) is refused; the store holds as many as cells use.
    per_image: int = Field(10, ge=1)
    # Sampler steps; left out, the backend's own default (DEFAULT_STEPS: sd 50, builtin 10).
    steps: int = Field(DEFAULT_STEPS["builtin"], ge=1)
    # Classifier-free guidance scale: how strongly each image follows its class (builtin) or prompt (sd); 1.0
    # turns guidance off, and higher values give more class-typical, less varied images.
    guidance: float = 3.0
    # How far inpaint's masked centre (and in-then-outpaint's first pass) is noised before denoising, in
    # (0, 1]: 1 starts from pure noise, lower values keep more of the real image under the mask.
    strength_inpaint: float = Field(0.97, gt=0, le=1)
    # The same for outpaint's masked border and in-then-outpaint's second pass, in (0, 1]: 1 starts from pure
    # noise, lower values keep more of the reference there.
    strength_outpaint: float = Field(0.95, gt=0, le=1)
    batch_size: int = role(OPERATIONAL, 16, ge=1)  # images per generation batch
    # Append ", Fitzpatrick skin type N" to each generation prompt whose reference has a known skin type (sd
    # only: the built-in generator is conditioned on the class alone; an experiment's DreamBooth fine-tune does
    # not add it to its own prompts).
    with_skin_type: bool = False
    # DreamBooth-style fine-tuning on the training pool: one model for all classes or one per class
    # A list compares generators: each value gets its own store and becomes a grid axis
    # (``generator_finetune``) of the cells with synthetic data.
    finetune: FinetuneMode | list[FinetuneMode] = "none"
    # What generators learn from: the whole training pool (the paper), or only each (seed,
    # n_real) real subset — then no synthetic image carries information from real images the
    # classifier was not given (one generator and store per subset).
    finetune_on: Literal["pool", "subset"] = "pool"
    # The backends' own configs, one table each (generate/*_config.py; a page each in the docs).
    builtin: BuiltinConfig = Field(default_factory=BuiltinConfig)
    # Stable Diffusion's table, [generator.sd] (which models, which resolution): read when backend = "sd", and
    # its resolution is DreamBooth's fine-tuning resolution unless [generator.dreambooth] sets one.
    sd: StableDiffusionConfig = Field(default_factory=StableDiffusionConfig)
    # DreamBooth's table, [generator.dreambooth]: how Stable Diffusion is fine-tuned when backend = "sd" and
    # finetune is "all" or "per-class" (the built-in generator fine-tunes with [generator.builtin]).
    dreambooth: DreamBoothConfig = Field(default_factory=DreamBoothConfig)

    @model_validator(mode="before")
    @classmethod
    def _flat_and_steps(cls, data):
        """Old flat keys into their tables; a config without ``steps`` samples with its backend's
        default, not another backend's."""
        if not isinstance(data, dict):
            return data
        data = read_flat_keys(data)
        if data.get("steps") is None:
            data = {**data, "steps": DEFAULT_STEPS.get(data.get("backend", "builtin"), DEFAULT_STEPS["builtin"])}
        return data

    def finetune_values(self) -> list[str]:
        return list(self.finetune) if isinstance(self.finetune, list) else [self.finetune]

    def given_model(self) -> str | None:
        """The model the active backend was given (a trained built-in folder, or SD's id/folder)."""
        return self.builtin.model if self.backend == "builtin" else self.sd.model

    def finetune_config(self) -> DreamBoothConfig:
        """DreamBooth's table as the fine-tune takes it: at the generation resolution unless set."""
        return self.dreambooth.at_resolution(self.sd.resolution)


def identity_view(gen: GeneratorSpec) -> dict[str, Any]:
    """The settings a store's identity hashes, in the flat spelling: every shared setting; each
    table setting under its former flat name (the first table in :func:`table_order` to claim
    it); any other table setting as ``table.field`` when it is not at its default. The other
    backend's table, which does not change what the store holds, shows its flat-spelling
    defaults. A config that the flat spelling could express gives the flat spelling's identity
    (tests/test_generator_tables.py checks every preset against the identities from before)."""
    data = gen.model_dump(mode="json")
    view = {k: data[k] for k in fields_with(GeneratorSpec, SETTING) if k not in TABLES}
    inactive = table_order(gen.backend)[-1]
    for table in table_order(gen.backend):
        model, values = type(getattr(gen, table)), getattr(gen, table).model_dump(mode="json")
        for name in fields_with(model, SETTING):
            former, value = _formerly(model, name), values[name]
            default = default_value(model, name)
            flat_default = declaration(model, name).get("formerly_default", ...)
            if table == inactive and value == default and flat_default is not ...:
                value = flat_default  # the other backend's table leaves the store alone: its flat default
            if former and former not in view:
                view[former] = value
            elif value != default:
                view[f"{table}.{name}"] = value
    return view
