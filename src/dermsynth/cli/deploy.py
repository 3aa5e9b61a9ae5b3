"""Using what a study found: ``evaluate`` (external validation), ``predict``, ``export``."""

from __future__ import annotations

from pathlib import Path

import typer

from dermsynth.cli import common as c
from dermsynth.cli.track import TrackOpt, track_folder, tracking_note
from dermsynth.errors import ConfigError, DataError


def _where(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--where {item!r}: use FIELD=VALUE, e.g. --where n_real=16")
        out[key.strip()] = value.strip()
    return out


@c.handles_errors
def evaluate(runs: Path = typer.Argument(..., help="A run record (STUDY/runs/ID.json) or a study folder."),
             dataset: str = c.DatasetOpt, root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt,
             csv: Path | None = typer.Option(None, help="folder data set: a CSV of path,label[,skin_type]."),
             where: list[str] = typer.Option([], "--where", help="FIELD=VALUE: only the runs of this cell "
                                             "(repeatable; all seeds)."),
             label_map: Path | None = typer.Option(None, help="CSV: external label, model class."),
             exclude_unknown: bool = typer.Option(False, help="Leave out images of labels the models do not know "
                                                               "(reported) instead of stopping."),
             ids: Path | None = typer.Option(None, help="Only these image ids of the data set (one per line or "
                                                        "an id column)."),
             name: str | None = typer.Option(None, help="Name of this evaluation (default: the root's folder)."),
             track: str | None = TrackOpt, as_json: bool = c.JsonOpt):
    """Apply a run, a grid cell or a whole experiment to another data set (external validation)."""
    from dermsynth.experiments.external_evaluation import evaluate_runs

    res = evaluate_runs(runs, dataset, root, where=_where(where), label_map=label_map,
                        exclude_unknown=exclude_unknown, ids_file=ids, name=name, classes=classes,
                        csv=csv)
    lines = [f"{r['run_id']}: internal {100 * r['internal_accuracy']:.1f} % → external "
             f"{100 * r['external_accuracy']:.1f} % (n = {r['external_n']})" for r in res["runs"]]
    left = f"; left out: {res['excluded_labels']}" if res["excluded_labels"] else ""
    # the study's folder: its external records are logged beside its runs (each once)
    res["tracking"] = track_folder(Path(res["folder"]).parent.parent, track)
    c.emit(res, as_json, "\n".join(lines) + f"\nrecords in {res['folder']}{left}; `dermsynth experiment report` adds "
           "a section"
           + tracking_note(res["tracking"]))


@c.handles_errors
def predict(source: Path = typer.Argument(..., help="A folder of images or a CSV with a 'path' column."),
            run: Path = typer.Option(..., "--run", help="The run record (STUDY/runs/ID.json) or an export folder."),
            to: Path | None = typer.Option(None, "--to", help="CSV of probabilities per class (default "
                                           "predictions.csv)."),
            device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
            out: Path | None = typer.Option(None, "--out", hidden=True, help="Deprecated spelling of --to."),
            as_json: bool = c.JsonOpt):
    """Class probabilities for new images, with the evaluation's own test-time settings."""
    import pandas as pd

    from dermsynth import files
    from dermsynth.train.checkpoint import load_bundle, load_export
    from dermsynth.train.predict import images_to_predict, predict_table

    out = c.renamed(to, out, "--out", "--to") or Path("predictions.csv")
    if not run.exists():
        raise DataError(f"--run {run} does not exist; pass a run record (STUDY/runs/ID.json) or a folder written "
                        "by `dermsynth classifier export`")
    images = images_to_predict(source)  # an empty or mistyped SOURCE fails before the model loads
    if run.is_dir():
        model, meta = load_export(run)
    else:
        try:
            run_id = files.read_json(run)["run_id"]
        except (ValueError, KeyError, TypeError):
            raise DataError(f"--run {run} is not a run record (a JSON file with a run_id, STUDY/runs/ID.json)"
                            ) from None
        model, meta = load_bundle(run.parent, run_id)
    table, failures = predict_table(model, meta, images, device)
    files.write_text(out, table.to_csv(index=False))
    if failures:
        files.write_text(out.with_suffix(".failures.csv"), pd.DataFrame(failures).to_csv(index=False))
    msg = f"{len(table)} images predicted → {out}"
    if failures:
        msg += (f"\n{len(failures)} could not be read (listed in {out.with_suffix('.failures.csv')}): "
                + "; ".join(f"{f['path']} ({f['reason']})" for f in failures[:5]))
    c.emit({"predicted": len(table), "failures": failures, "out": str(out)}, as_json, msg)


@c.handles_errors
def export(run: Path = typer.Argument(..., help="The run record, STUDY/runs/ID.json."),
           out: Path = typer.Argument(..., help="The folder to write."), as_json: bool = c.JsonOpt):
    """Weights, config, classes, preprocessing and a model card, usable without dermsynth."""
    from dermsynth.deploy.export import export_run

    folder = export_run(run, out)
    c.emit({"folder": str(folder)}, as_json, f"exported to {folder} (model_card.md, model.safetensors, hubconf.py)")
