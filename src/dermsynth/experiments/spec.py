"""ExperimentSpec: one TOML file defines a whole study (the paper's Fig. 1C framework).

    name = "fig3-cpu"
    seeds = 5                      # or a list
    [base]                         # any RunSpec field, shared by every cell
    dataset = "demo"
    [generator]                    # optional: how the synthetic store is made
    backend = "builtin"
    methods = ["inpaint", "text-to-image"]
    per_image = 10
    [grid]                         # axes over any RunSpec field
    n_real = [1, 16, 32]
    synthetic_per_real = [0, 10]

Cells with ``synthetic_per_real = 0`` ignore the method axis, so the real-only baseline is
run once and shared by every method's comparison.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
import warnings
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dermsynth.errors import ConfigDeprecationWarning, ConfigError
from dermsynth.experiments.generator_spec import GeneratorSpec
from dermsynth.experiments.slurm_spec import SlurmSpec
from dermsynth.experiments.tracking_spec import TrackingSpec
from dermsynth.generate.methods import METHODS
from dermsynth.registry import did_you_mean
from dermsynth.train.spec import RunSpec, real_only_fields


class ImbalanceSpec(BaseModel):
    """Fig. S-2 as a grid: each rare class, down-sampled to each size, in three arms.

    Arms: imbalanced (nothing added), synthetic (``n_real / rare_n − 1`` synthetic per real of
    the rare class: exact parity) and duplication (its real images repeated ``n_real / rare_n``
    times). The paper reports each rare class and the aggregate.
    """

    model_config = ConfigDict(extra="forbid")

    # The classes to make rare, one at a time (each gets its own cells), named as in the data's labels.
    rare_classes: list[str] = Field(min_length=1)
    # The real images per class each rare class is cut down to; each must divide base.n_real and be smaller,
    # so that the synthetic arm reaches exact parity with n_real / n − 1 synthetic per real.
    rare_n: list[int] = Field(min_length=1)

    def variants(self, n_real: int) -> list[dict[str, Any]]:
        out = []
        for cls in self.rare_classes:
            for n in self.rare_n:
                if n <= 0 or n >= n_real or n_real % n:
                    raise ConfigError(f"imbalance.rare_n = {n}: parity needs a divisor of base.n_real = {n_real} "
                                      "smaller than it (e.g. 25, 50, 100 for 200)")
                factor = n_real // n
                rare = {"class_n_real": {cls: n}}
                out += [rare, {**rare, "synthetic_per_real": factor - 1, "synthetic_classes": [cls]},
                        {**rare, "duplicate_classes": {cls: factor}}]
        return out


# Fields that change where or how a study runs, or what is planned, never a result: left out of its digest.
OPERATIONAL_FIELDS = {"tracking", "seed_sd", "slurm", "main_comparison", "sequential"}

GAP_OUTCOMES = ("worst_group_accuracy", "group_gap", "worst_class_recall", "tpr_gap", "fpr_gap")


class MainComparison(BaseModel):
    """The one comparison a study is designed and powered to decide, named before it runs: its
    synthetic arm against real only without a remedy, on one gap outcome, tested alone (a family
    of its own) rather than among the report's exploratory gap comparisons."""

    model_config = ConfigDict(extra="forbid")

    # The run fields the arm's cells have, e.g. {synthetic_allocation = "balance_skin_types",
    # synthetic_methods = ["inpaint"]}; its reference is the real-only cell with no remedy.
    arm: dict[str, Any]
    # The gap outcome it is decided on (analysis/gap_outcomes.py): worst_group_accuracy, group_gap,
    # worst_class_recall, tpr_gap or fpr_gap (the last two for binary tasks).
    outcome: Literal[GAP_OUTCOMES]


class SequentialSpec(BaseModel):
    """The group-sequential design a study is run under: ``experiment run`` adds seeds in looks
    until its comparisons are decided (analysis/sequential_study.py); the command line's
    --max-seeds, --looks and --spending override each value."""

    model_config = ConfigDict(extra="forbid")

    # The most seeds per arm a comparison gets, its last look (default: twice the config's seeds).
    max_seeds: int | None = Field(None, ge=2)
    # Looks from the config's seeds to max_seeds, as evenly spaced as whole seeds allow.
    looks: int = Field(3, ge=1)
    # How α = 0.05 is spent over the looks: "obrien-fleming" (strict early, near the fixed test at the
    # last look) or "pocock" (evenly).
    spending: Literal["obrien-fleming", "pocock"] = "obrien-fleming"


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The study's name, shown in logs, experiment.json and as the MLflow experiment (unless [tracking] names
    # one); part of the config's digest, so renaming makes `experiment run` refuse the old folder without --force.
    name: str
    # Free text on what the study asks (its first line is what `experiment presets` lists, and the quickstart
    # logs it); part of the config's digest, like ``name``.
    description: str = ""
    # Replicates per cell: an integer n runs seeds 0 … n − 1, a list runs exactly those (a grid ``seed`` axis
    # replaces both); more seeds narrow every comparison's confidence interval at proportionally more runs.
    seeds: int | list[int] = 5
    # The [base] table: run fields (RunSpec) shared by every cell, such as dataset, n_real and backbone; a
    # grid axis or variant overrides them, and an unknown field name is an error.
    base: dict[str, Any] = Field(default_factory=dict)
    # How the experiment makes its own synthetic store ([generator]); unset, cells with synthetic data read
    # the existing store that base.synthetic_store names.
    generator: GeneratorSpec | None = None
    # The axes to cross, {run field: [values]}: every combination × every seed is a cell (equal run ids run
    # once), and cells with synthetic_per_real = 0 share one real-only baseline.
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    variants: list[dict[str, Any]] = Field(default_factory=list)  # crossed with the grid; for paired settings
    imbalance: ImbalanceSpec | None = None  # Fig. S-2: expands into variants
    # For every cell with k synthetic per real, also a cell with the real images repeated k + 1
    # times: as many samples per epoch, no new images ("more data or more steps?").
    steps_matched_control: bool = False
    # Before the cells train, prove from the records that no synthetic image's reference and no generator
    # training image is a validation or test image, that no patient or duplicate group straddles splits, and
    # that no generator image is a near-duplicate of a held-out one; a violation stops the study. Turn it off
    # only to skip that work where the same split and store were audited before.
    audit_leakage: bool = True
    # Score the synthetic store with a classifier trained on real images only (needs a generator).
    recognisability: bool = True
    # Log the runs to MLflow (dermsynth.tracking); not part of the digest: it changes no result.
    tracking: TrackingSpec | None = None
    # Resources of executor "slurm" (partition, GPUs, time limit, array parallelism); not part of the digest.
    slurm: SlurmSpec | None = None
    # Planning only: the sd of accuracy between seeds of one cell (a fraction, e.g. 0.08), so that
    # `experiment plan` can say which effect the planned seeds detect before anything runs
    # (`experiment calibrate` measures it). Not part of the digest: it changes no result.
    seed_sd: float | None = Field(None, gt=0, lt=1)
    # The comparison chosen before running that the study is powered for ([main_comparison]: arm, outcome); the
    # report tests it alone and states it first. Not part of the digest: it changes no run.
    main_comparison: MainComparison | None = None
    # Run under a group-sequential design ([sequential]: max_seeds, looks, spending): `experiment run` adds seeds
    # until decided, as --until-decided does. Not part of the digest: the design is fixed in STUDY/sequential.json
    # at the first look, and a different one is refused there.
    sequential: SequentialSpec | None = None

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def digest(self) -> str:
        payload = self.model_dump(exclude=OPERATIONAL_FIELDS)
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _preset_or_error(path: Path) -> Path:
    """A shipped preset named like ``path`` (``fig3_cpu`` or ``fig3_cpu.toml``), else a ConfigError."""
    from dermsynth.experiments.presets import preset_names, preset_path

    name = path.name.removesuffix(".toml")
    if path.parent == Path(".") and name in preset_names():
        return preset_path(name)
    raise ConfigError(f"experiment config {path} not found{did_you_mean(name, preset_names())}; "
                      "`dermsynth experiment presets` lists the shipped configs (usable by name)")


def load_experiment(path: str | Path) -> ExperimentSpec:
    """Parse and validate a TOML file; errors name the field and the allowed values."""
    path = Path(path)
    if not path.exists():
        path = _preset_or_error(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return validate_experiment(raw, str(path))


def validate_experiment(raw: dict, where: str = "config") -> ExperimentSpec:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConfigDeprecationWarning)
            spec = ExperimentSpec(**raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: " + explain_validation(exc)) from None
    for w in caught:  # said again with the file they are about
        text = f"{where}: {w.message}" if issubclass(w.category, ConfigDeprecationWarning) else str(w.message)
        warnings.warn(text, w.category, stacklevel=2)
    fields = set(RunSpec.model_fields)
    sections = [("base", spec.base), ("grid", spec.grid)] + [(f"variants[{i}]", v) for i, v in
                                                            enumerate(spec.variants)]
    for section, keys in sections:
        unknown = sorted(set(keys) - fields)
        if unknown:
            hints = "; ".join(f"{u!r}{did_you_mean(u, fields) or ' is not a run field'}" for u in unknown)
            raise ConfigError(f"{where}: [{section}] has unknown field(s): {hints}. `dermsynth experiment show "
                              "CONFIG` prints every field with its value")
    for axis, values in spec.grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid axis {axis!r} must be a non-empty list")
    if spec.generator:
        bad = [m for m in spec.generator.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"{where}: generator.methods has unknown {bad}; allowed: {list(METHODS)}")
    for m in spec.grid.get("synthetic_methods", []):
        names = m if isinstance(m, list) else [m]
        if any(n not in METHODS for n in names):
            raise ConfigError(f"{where}: grid.synthetic_methods value {m!r}; allowed: {list(METHODS)}")
    for k in spec.grid.get("synthetic_per_real", []):
        if not isinstance(k, int) or k < 0:
            raise ConfigError(f"{where}: grid.synthetic_per_real value {k!r} must be an integer ≥ 0")
    filters = get_args(RunSpec.model_fields["synthetic_filter"].annotation)
    for section, keys in sections:  # checked here: a real-only cell drops its filter before validation
        values = keys.get("synthetic_filter", [])
        for name in values if isinstance(values, list) else [values]:
            if name not in filters:
                raise ConfigError(f"{where}: [{section}] synthetic_filter value {name!r}; allowed: {list(filters)}")
    cells(spec)  # validates every cell against RunSpec
    return spec


def _fields_of(model_name: str, path: tuple = ()) -> list[str]:
    """The field names of the model an error is about (for "did you mean"): the model the
    ValidationError is titled with, or the table ``path`` leads to inside it
    (``generator.builtin`` → BuiltinConfig)."""
    model = globals().get(model_name)
    for name in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or name not in model.model_fields:
            return []
        annotation = model.model_fields[name].annotation
        model = next((a for a in (annotation, *get_args(annotation))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def explain_validation(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":  # pydantic's "Extra inputs are not permitted", said plainly
            fields = _fields_of(exc.title, tuple(e["loc"][:-1]))
            parts.append(f"unknown field {loc!r}{did_you_mean(str(e['loc'][-1]), fields)}")
            continue
        parts.append(f"field {loc!r}: {e['msg']}" + (f" (got {e.get('input')!r})" if "input" in e else ""))
    return "; ".join(parts)


def cells(spec: ExperimentSpec) -> list[RunSpec]:
    """Every run of the grid × seeds, de-duplicated by run id, in a stable order."""
    axes = dict(spec.grid)
    axes.setdefault("seed", spec.seed_list())
    if "seed" in spec.grid:
        axes["seed"] = spec.grid["seed"]
    out, seen = [], set()
    if spec.generator is not None and "generator_finetune" not in axes:
        axes["generator_finetune"] = spec.generator.finetune_values()
    names = list(axes)
    variants = list(spec.variants)
    if spec.imbalance is not None:
        variants += spec.imbalance.variants(int(spec.base.get("n_real", RunSpec.model_fields["n_real"].default)))
    for values, variant in itertools.product(itertools.product(*(axes[n] for n in names)), variants or [{}]):
        fields = {**spec.base, **dict(zip(names, values, strict=True)), **variant}
        if fields.get("synthetic_per_real", 0) == 0:  # one real-only baseline for every method, generator, filter
            fields.update(real_only_fields())
        try:
            run = RunSpec(**fields)
        except ValidationError as exc:
            cell = {**dict(zip(names, values, strict=True)), **variant}
            raise ConfigError(f"grid cell {cell}: " + explain_validation(exc)) from None
        if run.run_id() not in seen:
            seen.add(run.run_id())
            out.append(run)
    if spec.steps_matched_control:
        for run in [r for r in out if r.synthetic_per_real > 0]:
            ctrl = run.model_copy(update={**real_only_fields(), "repeat_real": run.synthetic_per_real + 1})
            if ctrl.run_id() not in seen:
                seen.add(ctrl.run_id())
                out.append(ctrl)
    return out
