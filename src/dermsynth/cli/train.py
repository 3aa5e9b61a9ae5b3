"""``dermsynth train``: one classifier run from flags or a TOML of RunSpec fields."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import typer

from dermsynth.cli.common import JsonOpt, emit, handles_errors
from dermsynth.cli.track import TrackOpt
from dermsynth.errors import ConfigError


@handles_errors
def train(config: Path | None = typer.Option(None, help="TOML with RunSpec fields."),
          out: Path = typer.Option(Path("runs/single"), help="Folder for the JSON record (OUT/<run_id>.json)."),
          dataset: str | None = None, root: str | None = None, n_real: int | None = None,
          seed: int | None = None, backbone: str | None = None, image_size: int | None = None,
          max_epochs: int | None = None, transforms: bool | None = None,
          mode: Literal["finetune", "frozen", "linear-probe"] | None = None,
          synthetic_store: str | None = None, synthetic_per_real: int | None = None,
          classes: str | None = typer.Option(None, help="all | f17k9 | top-N | comma-separated list."),
          lr: float | None = None,
          pretrained: bool | None = typer.Option(None, help="ImageNet weights for the backbone (default: random "
                                                 "initialisation)."),
          precision: Literal["fp32", "bf16"] | None = None, track: str | None = TrackOpt, as_json: bool = JsonOpt):
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
    flags = dict(dataset=dataset, root=root, n_real=n_real, seed=seed, backbone=backbone, image_size=image_size,
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
    rec = run_training(spec, out)
    m = rec["metrics"]
    summary = {"run_id": rec["run_id"], "record": str(out / f"{rec['run_id']}.json"),
               **{k: m[k] for k in ("accuracy", "balanced_accuracy", "top3_accuracy", "n_test")},
               "epochs_run": rec["fit"]["epochs_run"]}
    tracked = ""
    if track:
        from dermsynth.tracking.mlflow_store import summary_line, track_records

        summary["tracking"] = track_records([rec], out, track)
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
                          f"`dermsynth experiment run {config}`; `dermsynth train` takes one run's fields")
    base = fields.pop("base", None)
    if base is None:
        return fields
    if not isinstance(base, dict):
        raise ConfigError(f"{config}: base must be a table ([base]) of run fields")
    for key in ("name", "description", "seeds"):  # experiment-level keys with no meaning for one run
        fields.pop(key, None)
    return {**base, **fields}
