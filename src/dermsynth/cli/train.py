"""``dermsynth classifier train``: one classifier run from flags or a TOML of RunSpec fields."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import typer

from dermsynth.cli.common import DATASET_NAMES, JsonOpt, emit, handles_errors
from dermsynth.cli.track import TrackOpt
from dermsynth.errors import ConfigError


@handles_errors
def train(config: Path | None = typer.Option(None, help="A TOML of run fields (the [base] fields of a study "
                                             "config); flags override it."),
          out: Path = typer.Option(Path("runs/single"), help="The study folder of this one run: the record goes to "
                                   "OUT/runs/<run_id>.json and the weights to OUT/runs/weights/, as in a study."),
          dataset: str | None = typer.Option(None, help="The data set: " + " | ".join(DATASET_NAMES) + "."),
          root: str | None = typer.Option(None, help="Folder holding the data set's files."),
          classes: str | None = typer.Option(None, help="all | f17k9 | top-N | comma-separated list."),
          n_test: int | None = typer.Option(None, "--n-test", help="Test images per class (or per skin-type "
                                            "group); the same value as `generator sample` and `audit` use."),
          n_val: int | None = typer.Option(None, "--n-val", help="Validation images per class."),
          split_seed: int | None = typer.Option(None, "--split-seed", help="Seed of the test/validation split."),
          n_real: int | None = typer.Option(None, help="Real training images per class."),
          seed: int | None = typer.Option(None, help="The run's seed (which real images, initialisation, order)."),
          backbone: str | None = typer.Option(None, help="A timm model name, e.g. efficientnet_b0 or resnet18."),
          image_size: int | None = typer.Option(None, help="Input side in pixels."),
          max_epochs: int | None = typer.Option(None, help="Most epochs (early stopping on validation may end "
                                                "sooner)."),
          transforms: bool | None = typer.Option(None, help="Training augmentations (flips, rotations, colour "
                                                 "jitter) as in the paper."),
          mode: Literal["finetune", "frozen", "linear-probe"] | None = typer.Option(
              None, help="Train the whole network, only the head on a frozen backbone, or a linear probe."),
          synthetic_store: str | None = typer.Option(None, help="A synthetic store to add images from."),
          synthetic_per_real: int | None = typer.Option(None, help="Synthetic images added per real training "
                                                        "image (0: real only)."),
          lr: float | None = typer.Option(None, help="Learning rate."),
          pretrained: bool | None = typer.Option(None, help="ImageNet weights for the backbone (default: random "
                                                 "initialisation)."),
          precision: Literal["fp32", "bf16"] | None = typer.Option(None, help="Training precision on a CPU "
                                                                   "(default: the study's probe decides)."),
          track: str | None = TrackOpt, as_json: bool = JsonOpt):
    """Train and evaluate one classifier."""
    from pydantic import ValidationError

    from dermsynth.experiments.spec import explain_validation
    from dermsynth.train.run import run_training
    from dermsynth.train.spec import RunSpec

    try:
        fields = tomllib.loads(config.read_text()) if config else {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{config}: {exc}") from None
    fields = run_fields(fields, config)
    flags = dict(dataset=dataset, root=root, n_test=n_test, n_val=n_val, split_seed=split_seed,
                 n_real=n_real, seed=seed, backbone=backbone, image_size=image_size,
                 max_epochs=max_epochs, transforms=transforms, mode=mode, synthetic_store=synthetic_store,
                 synthetic_per_real=synthetic_per_real, classes=classes, lr=lr, pretrained=pretrained,
                 precision=precision)
    fields.update({k: v for k, v in flags.items() if v is not None})
    try:
        spec = RunSpec(**fields)
    except ValidationError as exc:
        raise ConfigError(f"{config or 'flags'}: {explain_validation(exc)}") from None
    from dermsynth.models.backbones import check_backbone

    check_backbone(spec.backbone)  # a mistyped name fails before the images are read
    from dermsynth.experiments.results import runs_dir

    rec = run_training(spec, runs_dir(out))
    m = rec["metrics"]
    summary = {"run_id": rec["run_id"], "record": str(runs_dir(out) / f"{rec['run_id']}.json"),
               **{k: m[k] for k in ("accuracy", "balanced_accuracy", "top3_accuracy", "n_test")},
               "epochs_run": rec["fit"]["epochs_run"]}
    tracked = ""
    if track:
        from dermsynth.tracking.mlflow_store import summary_line, track_records

        summary["tracking"] = track_records([rec], runs_dir(out), track)
        tracked = "\n" + summary_line(summary["tracking"])
    init = ("pretrained weights" if spec.pretrained or spec.pretrained_path else
            "randomly initialised (--pretrained for ImageNet weights)")
    summary["backbone"] = f"{spec.backbone}, {init}"
    emit(summary, as_json, f"accuracy {100 * m['accuracy']:.1f} % (balanced {100 * m['balanced_accuracy']:.1f} %), "
                           f"{rec['fit']['epochs_run']} epochs, {summary['backbone']} → {summary['record']}{tracked}")


EXPERIMENT_TABLES = ("grid", "generator", "variants", "imbalance")


def run_fields(fields: dict, config: Path | None) -> dict:
    """A run TOML's fields: top-level RunSpec fields, or an experiment-style ``[base]`` table
    (accepted: its fields are a run's fields); an experiment's grid is named as such."""
    tables = [k for k in EXPERIMENT_TABLES if k in fields]
    if tables:
        raise ConfigError(f"{config} is an experiment config ([{'], ['.join(tables)}]): run it with "
                          f"`dermsynth experiment run {config}`; `dermsynth classifier train` takes one run's fields")
    base = fields.pop("base", None)
    if base is None:
        return fields
    if not isinstance(base, dict):
        raise ConfigError(f"{config}: base must be a table ([base]) of run fields")
    for key in ("name", "description", "seeds"):  # experiment-level keys with no meaning for one run
        fields.pop(key, None)
    return {**base, **fields}
