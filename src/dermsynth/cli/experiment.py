"""``dermsynth experiment``: run, status, results."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Literal

import typer

from dermsynth.cli.common import (
    JsonOpt,
    OldOutOpt,
    StudyOpt,
    default_study,
    deprecation,
    emit,
    handles_errors,
    renamed,
    require_dir,
    say,
)
from dermsynth.cli.track import TrackOpt, track_folder, tracking_note
from dermsynth.errors import EXIT_AUDIT_FAILED, DataError

app = typer.Typer(no_args_is_help=True)

ConfigArg = typer.Argument(..., help="An experiment config (a TOML file) or a preset's name "
                                     "(`dermsynth experiment presets`).")


def study_folder(config: Path, study: Path | None, out: Path | None) -> Path:
    """``--study``, else the deprecated ``--out``, else runs/NAME."""
    return renamed(study, out, "--out", "--study") or default_study(config)


def require_study(config: Path, folder: Path) -> Path:
    """An existing study folder, or an error that says how to make one (never "60 pending")."""
    return require_dir(folder, "study", f"run `dermsynth experiment run {config} --study {folder}` first, or pass "
                                        "the folder it wrote with --study")


@app.command("run")
@handles_errors
def experiment_run(config: Path = ConfigArg, study: Path | None = StudyOpt,
                   executor: Literal["local", "ray", "slurm"] = typer.Option(
                       "local", help="Where stages and cells run: this machine, a Ray cluster, or Slurm job arrays "
                       "(resources from the config's [slurm] table and the --slurm-* options)."),
                   workers: int | None = typer.Option(None, help="Parallel runs."),
                   address: str | None = typer.Option(None, help="Ray cluster address (ray executor)."),
                   slurm_partition: str | None = typer.Option(None, help="Slurm: the partition."),
                   slurm_gpus_per_task: int | None = typer.Option(None, help="Slurm: GPUs per task that uses one."),
                   slurm_cpus_per_task: int | None = typer.Option(None, help="Slurm: CPUs per array task."),
                   slurm_mem_gb: float | None = typer.Option(None, help="Slurm: memory per array task (GB)."),
                   slurm_time_minutes: int | None = typer.Option(None, help="Slurm: time limit per array task."),
                   slurm_array_parallelism: int | None = typer.Option(None, help="Slurm: array tasks at once."),
                   slurm_sbatch_line: list[str] | None = typer.Option(None, help="Slurm: an extra sbatch option "
                                                                      "such as --account=lab (repeatable)."),
                   slurm_setup: list[str] | None = typer.Option(None, help="Slurm: a shell line run before each "
                                                                "task, e.g. 'module load cuda' (repeatable)."),
                   slurm_requeue: bool | None = typer.Option(None, help="Slurm: submit with --requeue, so "
                                                             "Slurm requeues a preempted task itself."),
                   slurm_max_resubmits: int | None = typer.Option(None, help="Slurm: resubmissions of a task "
                                                                  "that ends without a result."),
                   force: bool = typer.Option(False, help="Write beside results of another config."),
                   rehearse: bool = typer.Option(False, help="Run the config's CPU rehearsal (stand-in data, models "
                                                 "and sizes; every stage, axis, statistic and report section) and "
                                                 "write its report."),
                   until_decided: bool = typer.Option(False, help="Add seeds in rounds to the cells whose "
                                                      "comparisons are undecided, under a group-sequential design "
                                                      "(looks and spent α recorded in STUDY/sequential.json); with "
                                                      "a main_comparison table, to its two cells until it is "
                                                      "decided; a sequential table in the config does the same "
                                                      "without it."),
                   max_seeds: int | None = typer.Option(None, help="--until-decided: most seeds per arm (default: "
                                                        "the config's sequential table, else what --target-effect "
                                                        "needs, else twice the config's)."),
                   looks: int | None = typer.Option(None, help="--until-decided: looks from the config's seeds to "
                                                    "--max-seeds (default: the config's sequential table, else 3)."),
                   target_effect: float | None = typer.Option(None, help="--until-decided: the effect in accuracy "
                                                              "points (e.g. 5) --max-seeds is sized to detect."),
                   spending: Literal["obrien-fleming", "pocock"] | None = typer.Option(
                       None, help="--until-decided: how α is spent over the looks (default: the config's "
                       "sequential table, else obrien-fleming)."),
                   track: str | None = TrackOpt, out: Path | None = OldOutOpt, as_json: bool = JsonOpt):
    """Run every stage and every pending grid cell of an experiment config (writes STUDY/runs/*.json)."""
    from dermsynth.analysis.report import build_report
    from dermsynth.analysis.sequential_study import outcome_line, run_until_decided, sequential_design
    from dermsynth.experiments.rehearsal import rehearse as rehearsal_of
    from dermsynth.experiments.runner import run_experiment
    from dermsynth.experiments.slurm_spec import with_overrides
    from dermsynth.experiments.spec import load_experiment

    spec = load_experiment(config)
    if executor == "slurm":
        spec = spec.model_copy(update={"slurm": with_overrides(
            spec.slurm, partition=slurm_partition, gpus_per_task=slurm_gpus_per_task,
            cpus_per_task=slurm_cpus_per_task, mem_gb=slurm_mem_gb, time_minutes=slurm_time_minutes,
            array_parallelism=slurm_array_parallelism, sbatch_lines=slurm_sbatch_line, setup=slurm_setup,
            requeue=slurm_requeue, max_resubmits=slurm_max_resubmits)})
    chosen = renamed(study, out, "--out", "--study")
    folder = chosen or default_study(config)
    if rehearse:
        folder = chosen or default_study(f"{config.stem}-rehearsal")
        spec = rehearsal_of(spec, cache_dir=str(folder / "cache"))
    design = sequential_design(spec, until_decided, rehearse, max_seeds, looks, spending, target_effect)
    if design is not None:
        most, n_looks, spend = design
        outcome = run_until_decided(spec, folder, most, n_looks, target_effect / 100 if target_effect else None,
                                    spend, executor, workers, address, force)
        res = {**asdict(outcome), "report": str(build_report(folder))}
        text = outcome_line(outcome) + f"; report {res['report']}"
    else:
        res = asdict(run_experiment(spec, folder, executor, workers, address, force))
        if rehearse:
            res["report"] = str(build_report(folder))
        text = (f"{res['runs']} runs: {res['ran']} ran now, {res['failed']} failed"
                + (f"; report {res['report']}" if rehearse else ""))
    res["tracking"] = track_folder(folder, track, spec.tracking)
    emit(res, as_json, text + tracking_note(res["tracking"]))
    if res["failed"]:
        raise typer.Exit(EXIT_AUDIT_FAILED)


@app.command("status")
@handles_errors
def experiment_status(config: Path = ConfigArg, study: Path | None = StudyOpt, out: Path | None = OldOutOpt,
                      as_json: bool = JsonOpt):
    """done / running / failed / pending per cell, and an ETA."""
    import pandas as pd

    from dermsynth.experiments.runner import eta_seconds
    from dermsynth.experiments.runner import experiment_status as status_of
    from dermsynth.experiments.slurm_driver import slurm_jobs
    from dermsynth.experiments.spec import load_experiment

    spec = load_experiment(config)
    folder = require_study(config, study_folder(config, study, out))
    st = status_of(spec, folder)
    eta = eta_seconds(st, folder)
    counts = {k: int(v) for k, v in st["state"].value_counts().items()}
    stages = [j for j in slurm_jobs(folder) if not j["task"].startswith("train/")]
    stage_text = ("\nSlurm stage tasks:\n" + pd.DataFrame(stages).drop(columns=["log"]).to_string(index=False)
                  if stages else "")
    emit({"counts": counts, "eta_seconds": eta, "cells": st.to_dict(orient="records"), "slurm_stages": stages},
         as_json, lambda: say(st.to_string(index=False) + "\n" + ", ".join(f"{n} {k}" for k, n in counts.items())
                              + (f"; ETA ≈ {eta / 60:.1f} min" if eta else "") + stage_text))


@app.command("results")
@handles_errors
def experiment_results(config: Path = ConfigArg, study: Path | None = StudyOpt,
                       fmt: Literal["csv", "parquet"] = typer.Option("csv", "--format", help="The table's file "
                                                                     "format."),
                       dest: Path | None = typer.Option(None, "--to", help="Output file (default STUDY/results.FMT)."),
                       out: Path | None = OldOutOpt, as_json: bool = JsonOpt):
    """Flatten all run records into one table."""
    from dermsynth.experiments.results import results_table

    folder = require_study(config, study_folder(config, study, out))
    table = results_table(folder)
    if table.empty:
        raise DataError(f"no finished run in {folder / 'runs'} yet: nothing to tabulate; "
                        f"`dermsynth experiment status {config} --study {folder}` shows what is pending")
    dest = dest or folder / f"results.{fmt}"
    if fmt == "parquet":
        table.to_parquet(dest)
    else:
        table.to_csv(dest, index=False)
    emit({"runs": len(table), "file": str(dest)}, as_json, f"{len(table)} runs → {dest}")


@app.command("presets")
@handles_errors
def experiment_presets(as_json: bool = JsonOpt):
    """The shipped configs (the paper's experiments at paper and CPU scale, the quickstart): use them by name."""
    from dermsynth.cli.configs import presets_table

    rows = presets_table()
    emit(rows, as_json, lambda: say("\n".join(f"{r['name']:28s} {r['description']}" for r in rows)
                                    + "\nuse by name, e.g. `dermsynth experiment plan fig3_cpu`; "
                                    "`dermsynth experiment show NAME` prints one in full"))


@app.command("show")
@handles_errors
def experiment_show(config: Path = ConfigArg, as_json: bool = JsonOpt):
    """The config fully resolved: every run field with its default filled in, the grid, the generator."""
    from dermsynth.cli.configs import resolved_config, to_toml
    from dermsynth.experiments.spec import load_experiment

    resolved = resolved_config(load_experiment(config))
    emit(resolved, as_json, lambda: say(to_toml(resolved)))


@app.command("plan")
@handles_errors
def experiment_plan(config: Path = ConfigArg, device: Literal["a100", "h100", "cpu"] = typer.Option(
                        "a100", help="Whose throughput to assume (GPU rows: approximate public figures)."),
                    throughput: Path | None = typer.Option(None, help="JSON of your own measured rates."),
                    study: Path | None = typer.Option(None, "--study", metavar="DIR", help="The study folder, "
                                                      "whose calibration (`experiment calibrate`) gives the seed sd "
                                                      "for the power line (default runs/NAME)."),
                    target_effect: float | None = typer.Option(None, help="An effect in accuracy points (e.g. 5): "
                                                               "also say how many seeds per arm detect it with 80 % "
                                                               "power."),
                    out: Path | None = OldOutOpt, as_json: bool = JsonOpt):
    """Before anything runs: models to fine-tune, images to generate, classifier runs, device-hours, disk, and
    the smallest effect the planned seeds detect (from a calibration or `seed_sd` in the config)."""
    from dermsynth.analysis.aa_check import planned_power, power_line
    from dermsynth.experiments.plan import load_throughput, plan
    from dermsynth.experiments.spec import load_experiment

    spec = load_experiment(config)
    table = plan(spec, device, load_throughput(throughput) if throughput else None)
    total = table["device_hours"].sum(min_count=1)
    power = planned_power(spec, study_folder(config, study, out), target_effect / 100 if target_effect else None)
    result = {**table.attrs, "stages": table.to_dict(orient="records"), "total_device_hours": total, "power": power}
    power_text = (power_line(power) if power else "power: unknown until seeds vary — run `dermsynth experiment "
                  "calibrate CONFIG` or set seed_sd in the config")
    emit(result, as_json, lambda: say(
        f"{config.stem} on {table.attrs['device']} ({table.attrs['source']}; class sizes: "
        f"{table.attrs['class_sizes']})\n" + table.drop(columns=["work"]).to_string(index=False)
        + f"\ntotal ≈ {total:.1f} device-hours" + ("" if table["device_hours"].notna().all() else
                                                   " (stages without a known rate left out)") + "\n" + power_text))


@app.command("calibrate")
@handles_errors
def experiment_calibrate(config: Path = ConfigArg, study: Path | None = StudyOpt,
                         seeds: int = typer.Option(10, help="Seeds of the calibration cell (≥ 2 × the study's)."),
                         where: list[str] | None = typer.Option(None, help="FIELD=VALUE naming the real-only cell, "
                                                                "e.g. --where n_real=16 --where transforms=false."),
                         workers: int = typer.Option(1, help="Parallel training runs."),
                         out: Path | None = OldOutOpt, as_json: bool = JsonOpt):
    """A/A check: train one real-only cell with K seeds; how often does each test call identical arms different?"""
    from dermsynth.analysis.aa_check import calibrate, effect_text, interaction_line, interval_text
    from dermsynth.experiments.calibrate import parse_where
    from dermsynth.experiments.spec import load_experiment

    folder = study_folder(config, study, out)
    res = calibrate(load_experiment(config), folder, seeds, parse_where(where), workers)
    power = res["power"]
    emit(res, as_json, lambda: say(
        f"{res['cell']}: {res['seeds']} seeds, accuracy {100 * res['accuracy_min']:.1f}–"
        f"{100 * res['accuracy_max']:.1f} % (seed sd {100 * res['seed_sd']:.1f} points)\n"
        f"A/A at {res['seeds_per_arm']} seeds per arm ({res['comparisons']} comparisons, nominal 5 %): paper's test "
        f"{interval_text(res['paper_test_false_positive_rate'], res['paper_test_false_positive_interval'])} "
        "significant, seed-aware test "
        f"{interval_text(res['seed_aware_false_positive_rate'], res['seed_aware_false_positive_interval'])}\n"
        f"{interaction_line(res)}\n"
        f"with {power['seeds_per_arm']} seeds per arm {effect_text(power['detectable_effect'])}; 5 points need "
        f"{power['seeds_for_5_points'] or '> 200'} seeds, 10 points "
        f"{power['seeds_for_10_points'] or '> 200'}\nstored in {folder / 'analysis' / 'calibration'} (the report shows "
        "it)"))


@app.command("track")
@handles_errors
def experiment_track(config: str | None = typer.Argument(None, help="The config or preset whose study to log "
                                                                   "(its folder is runs/NAME unless --study)."),
                     study: Path | None = StudyOpt,
                     uri: str = typer.Option("local", "--uri", metavar="URI", help="MLflow tracking URI: `local` = "
                                             "sqlite:///STUDY/mlflow.db, sqlite:///PATH.db or http://HOST:PORT."),
                     experiment: str | None = typer.Option(None, help="MLflow experiment (default: the config's "
                                                          "name)."),
                     checkpoints: bool = typer.Option(True, help="Log the saved weights as artifacts."),
                     to: str | None = typer.Option(None, "--to", hidden=True, help="Deprecated spelling of --uri."),
                     as_json: bool = JsonOpt):
    """Log a study that has already run to MLflow: its runs (once each), external evaluations and report."""
    from dermsynth.cli.analysis import study_of
    from dermsynth.experiments.tracking_spec import TrackingSpec
    from dermsynth.tracking.mlflow_store import summary_line, track_study

    folder = study_of(config, study)
    if not (folder / "runs").is_dir():
        raise DataError(f"{folder} has no runs/ folder: give the study folder `dermsynth experiment run` wrote")
    if to is not None:
        deprecation("--to", "--uri")
        uri = to
    res = track_study(folder, TrackingSpec(uri=uri, experiment=experiment, checkpoints=checkpoints), strict=True)
    emit(res, as_json, summary_line(res))


@app.command("triage")
@handles_errors
def experiment_triage(config: Path = ConfigArg,
                      study: Path | None = typer.Option(None, "--study", metavar="DIR", help="The study folder (its "
                                                        "stores are made there if missing; default runs/NAME); the "
                                                        "triage goes to STUDY/triage."),
                      out: Path | None = OldOutOpt,
                      to: Path | None = typer.Option(None, "--to", hidden=True, help="Deprecated: the triage folder."),
                      as_json: bool = JsonOpt):
    """A first look at the whole grid in about a minute: a linear probe per cell on features computed once."""
    from dermsynth.analysis.report import build_report
    from dermsynth.experiments.spec import load_experiment
    from dermsynth.experiments.triage import triage

    folder = study_folder(config, study, out)
    if to is not None:
        deprecation("--to", "the default STUDY/triage")
    dest = to or folder / "triage"
    res = triage(load_experiment(config), folder, dest)
    res["report"] = str(build_report(dest))
    emit(res, as_json, f"{res['cells']} cells probed in {res['seconds']:.0f} s (features "
                       f"{res['feature_seconds']:.0f} s); report {res['report']}")
