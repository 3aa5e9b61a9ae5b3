"""``dermsynth train``: one classifier run from flags or a TOML of RunSpec fields."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import tomllib
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
    flags = dict(dataset=dataset, root=root, n_real=n_real, seed=seed, backbone=backbone, image_size=image_size,
                 max_epochs=max_epochs, transforms=transforms, mode=mode, synthetic_store=synthetic_store,
                 synthetic_per_real=synthetic_per_real, precision=precision)
    fields.update({k: v for k, v in flags.items() if v is not None})
    try:
        spec = RunSpec(**fields)
    except ValidationError as exc:
        raise ConfigError(f"{config or 'flags'}: {explain_validation(exc)}") from None
    rec = run_training(spec, out, progress=not as_json)
    m = rec["metrics"]
    summary = {"run_id": rec["run_id"], "record": str(out / f"{rec['run_id']}.json"),
               **{k: m[k] for k in ("accuracy", "balanced_accuracy", "top3_accuracy", "n_test")},
               "epochs_run": rec["fit"]["epochs_run"]}
    tracked = ""
    if track:
        from dermsynth.tracking.mlflow_store import summary_line, track_records

        summary["tracking"] = track_records([rec], out, track)
        tracked = "\n" + summary_line(summary["tracking"])
    emit(summary, as_json, f"accuracy {100 * m['accuracy']:.1f} % (balanced {100 * m['balanced_accuracy']:.1f} %), "
                           f"{rec['fit']['epochs_run']} epochs → {summary['record']}{tracked}")
