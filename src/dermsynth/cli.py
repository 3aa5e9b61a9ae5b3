"""The ``dermsynth`` command line: each command is a thin call into the modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dermsynth.errors import DermsynthError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Synthetic data from diffusion models for medical image classifiers.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: info, download, clean, split.")
app.add_typer(data_app, name="data")
console = Console(stderr=True)

DatasetOpt = typer.Option("demo", "--dataset", help="demo | fitzpatrick17k | ddi | folder")
RootOpt = typer.Option(None, "--root", help="Folder holding the data set's files.")
ClassesOpt = typer.Option(None, "--classes", help="all | f17k9 | top-N | comma-separated list")


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


@data_app.command("info")
def data_info(dataset: str = DatasetOpt, root: Path | None = RootOpt,
              classes: str | None = ClassesOpt,
              check_images: bool = typer.Option(False, help="Decode every image to find unreadable ones."),
              as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """Per-class and skin-type counts, missing and unreadable images."""
    from dermsynth.data.info import dataset_info

    try:
        info = dataset_info(dataset, root, classes, check_images=check_images)
    except DermsynthError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    t = Table(title=f"{dataset}: {info['present']} images present, {info['missing']} missing")
    t.add_column("class")
    t.add_column("images", justify="right")
    t.add_column("missing", justify="right")
    for name, n in info["per_class"].items():
        t.add_row(name, str(n), str(info["missing_per_class"].get(name, 0)))
    Console().print(t)
    Console().print(f"skin types: {info['skin_types']}")
    if info["unreadable"]:
        Console().print(f"[red]unreadable:[/] {info['unreadable']}")


@data_app.command("download")
def data_download(dataset: str = DatasetOpt, root: Path = typer.Option(..., "--root"),
                  workers: int = 8, retries: int = 3, timeout: float = 15.0,
                  limit: int | None = typer.Option(None, help="Only the first N rows (a trial run).")):
    """Fetch Fitzpatrick 17k images from the CSV's URLs: verified, resumable, atomic."""
    from dermsynth.data.download import download_images
    from dermsynth.data.fitzpatrick import read_metadata

    if dataset != "fitzpatrick17k":
        _fail(DermsynthError(f"download supports --dataset fitzpatrick17k, not {dataset!r}"))
    try:
        meta = read_metadata(root)
    except DermsynthError as exc:
        _fail(exc)
    if limit:
        meta = meta.head(limit)
    res = download_images(meta, root, workers=workers, retries=retries, timeout=timeout)
    counts = res["status"].value_counts().to_dict()
    Console().print(f"downloaded {counts.get('ok', 0)}, already present {counts.get('skipped', 0)}, "
                    f"failed {counts.get('failed', 0)}")
    failed = res[res["status"] == "failed"]
    if len(failed):
        t = Table(title="failures (re-run the same command to retry)")
        t.add_column("md5hash")
        t.add_column("reason")
        for _, r in failed.head(30).iterrows():
            t.add_row(r["md5hash"], r["detail"])
        Console().print(t)
        failed.to_csv(Path(root) / "download_failures.csv", index=False)


@data_app.command("clean")
def data_clean(dataset: str = DatasetOpt, root: Path | None = RootOpt,
               classes: str | None = ClassesOpt,
               max_distance: int = typer.Option(4, help="pHash Hamming distance for near duplicates."),
               out: Path = typer.Option(Path("duplicates.csv"), help="Where to write the pair report."),
               drop: bool = typer.Option(False, help="Also write a cleaned table keeping one image per cluster."),
               embedding: str | None = typer.Option(None, help="Also compare embeddings: clip[:PATH] | timm:NAME."),
               max_cosine: float = typer.Option(0.02, help="Cosine distance for embedding near-duplicates.")):
    """Find exact and near-duplicate images within and across classes."""
    from dermsynth.data.clean import find_duplicates
    from dermsynth.data.datasets import load_dataset

    try:
        table = load_dataset(dataset, root, classes=classes)
    except DermsynthError as exc:
        _fail(exc)
    encoder = None
    if embedding:
        from dermsynth.analysis.embeddings import make_encoder

        encoder = make_encoder(embedding)
    rep = find_duplicates(table, max_distance, encoder=encoder, max_cosine=max_cosine)
    rep.pairs.to_csv(out, index=False)
    Console().print(f"{rep.summary()} → {out}")
    if drop:
        kept = table.drop(index=rep.to_drop())
        cleaned = out.with_name(out.stem + "_clean_table.csv")
        kept.to_csv(cleaned, index=False)
        Console().print(f"kept {len(kept)} of {len(table)} images → {cleaned}")


exp_app = typer.Typer(no_args_is_help=True, help="Experiments: run, status, results.")
app.add_typer(exp_app, name="experiment")
gen_app = typer.Typer(no_args_is_help=True, help="The built-in generator: train.")
app.add_typer(gen_app, name="generator")
audit_app = typer.Typer(no_args_is_help=True, help="Audits: leakage.")
app.add_typer(audit_app, name="audit")


def _default_out(config: Path) -> Path:
    return Path("runs") / config.stem


@exp_app.command("run")
def experiment_run(config: Path, out: Path | None = typer.Option(None, help="Results folder (default runs/NAME)."),
                   executor: str = typer.Option("local", help="local | ray"),
                   workers: int | None = typer.Option(None, help="Parallel runs."),
                   address: str | None = typer.Option(None, help="Ray cluster address (ray executor)."),
                   force: bool = typer.Option(False, help="Write beside results of another config.")):
    """Run every stage and every pending grid cell of an experiment config."""
    from dermsynth.experiments.runner import run_experiment
    from dermsynth.experiments.spec import load_experiment

    spec = load_experiment(config)
    res = run_experiment(spec, out or _default_out(config), executor, workers, address, force)
    Console().print(res)
    if res["failed"]:
        raise typer.Exit(1)


@exp_app.command("status")
def experiment_status_cmd(config: Path, out: Path | None = typer.Option(None)):
    """done / running / failed / pending per cell."""
    from dermsynth.experiments.runner import eta_seconds, experiment_status
    from dermsynth.experiments.spec import load_experiment

    folder = out or _default_out(config)
    st = experiment_status(load_experiment(config), folder)
    Console().print(st.to_string(index=False))
    eta = eta_seconds(st, folder)
    Console().print(f"{st['state'].value_counts().to_dict()}" + (f"; ETA ≈ {eta / 60:.1f} min" if eta else ""))


@exp_app.command("results")
def experiment_results(config: Path, out: Path | None = typer.Option(None),
                       fmt: str = typer.Option("csv", "--format", help="csv | parquet"),
                       dest: Path | None = typer.Option(None, "--to", help="Output file.")):
    """Flatten all run records into one table."""
    from dermsynth.experiments.runner import results_table

    table = results_table(out or _default_out(config))
    dest = dest or (out or _default_out(config)) / f"results.{fmt}"
    if fmt == "parquet":
        table.to_parquet(dest)
    elif fmt == "csv":
        table.to_csv(dest, index=False)
    else:
        raise DermsynthError(f"--format {fmt!r}; choose csv or parquet")
    Console().print(f"{len(table)} runs → {dest}")


@app.command()
def report(results: Path = typer.Argument(..., help="An experiment's output folder."),
           out: Path | None = typer.Option(None, help="HTML file (default RESULTS/report.html)."),
           ci: str = typer.Option("wald", help="wald (as the paper) | wilson"),
           test: str = typer.Option("prop", help="prop (two-sample proportion test) | fisher"),
           correction: bool = typer.Option(True, help="Yates' continuity correction (R's prop.test default).")):
    """Statistics, figures and one self-contained HTML report."""
    from dermsynth.analysis.report import build_report

    if ci not in ("wald", "wilson") or test not in ("prop", "fisher"):
        _fail(DermsynthError(f"--ci {ci!r} / --test {test!r}: choose wald|wilson and prop|fisher"))
    Console().print(f"report → {build_report(results, out, ci=ci, test=test, correct=correction)}")


@app.command()
def train(config: Path | None = typer.Option(None, help="TOML with RunSpec fields."),
          out: Path = typer.Option(Path("runs/single"), help="Folder for the JSON record."),
          dataset: str | None = None, root: str | None = None, n_real: int | None = None,
          seed: int | None = None, backbone: str | None = None, image_size: int | None = None,
          max_epochs: int | None = None, transforms: bool | None = None, mode: str | None = None,
          synthetic_store: str | None = None, synthetic_per_real: int | None = None,
          precision: str | None = None):
    """Train and evaluate one classifier; writes OUT/<run_id>.json."""
    import tomllib
    from pydantic import ValidationError

    from dermsynth.train.run import run_training
    from dermsynth.train.spec import RunSpec

    fields = tomllib.loads(config.read_text()) if config else {}
    flags = dict(dataset=dataset, root=root, n_real=n_real, seed=seed, backbone=backbone, image_size=image_size,
                 max_epochs=max_epochs, transforms=transforms, mode=mode, synthetic_store=synthetic_store,
                 synthetic_per_real=synthetic_per_real, precision=precision)
    fields.update({k: v for k, v in flags.items() if v is not None})
    try:
        spec = RunSpec(**fields)
    except ValidationError as exc:
        from dermsynth.experiments.spec import _explain

        _fail(DermsynthError(f"{config or 'flags'}: {_explain(exc)}"))
    rec = run_training(spec, out)
    m = rec["metrics"]
    Console().print(f"accuracy {100 * m['accuracy']:.1f} % (balanced {100 * m['balanced_accuracy']:.1f} %), "
                    f"{rec['fit']['epochs_run']} epochs → {out / (rec['run_id'] + '.json')}")


@gen_app.command("train")
def generator_train(dataset: str = DatasetOpt, root: Path | None = RootOpt, classes: str | None = ClassesOpt,
                    out: Path = typer.Option(Path("generator"), help="Folder for the model."),
                    size: int = 32, steps: int = 600, minutes: float | None = None,
                    n_test: int = 40, n_val: int = 40, split_seed: int = 0,
                    finetune_class: str | None = typer.Option(None, help="Continue training on one class."),
                    init_from: Path | None = typer.Option(None, help="Model to continue from.")):
    """Train the built-in generator on the training pool only (resumable)."""
    from dermsynth.data.cache import cache_images
    from dermsynth.generate.builtin import BuiltinConfig, train_builtin

    split = _split_for(dataset, root, classes, n_test, n_val, split_seed)
    pool = split.pool if finetune_class is None else split.pool[split.pool["label"] == finetune_class]
    if pool.empty:
        _fail(DermsynthError(f"no training-pool images of class {finetune_class!r}"))
    cached = cache_images(pool, size)
    labels = list(pool.set_index("id").loc[cached.ids, "label"])
    res = train_builtin(cached.array, labels, out, classes=sorted(split.table["label"].unique()), max_steps=steps,
                        max_minutes=minutes, init_from=init_from, config=BuiltinConfig(size=size))
    (out / "finetune_ids.txt").write_text("\n".join(cached.ids))
    Console().print(res)


@app.command()
def generate(backend: str = typer.Option("builtin", help="builtin | sd"),
             model: str = typer.Option(..., help="Model folder (builtin) or hub id / folder (sd)."),
             inpaint_model: str | None = typer.Option(None, help="sd: the inpainting model."),
             method: str = typer.Option("text-to-image", help="text-to-image | inpaint | outpaint | in-then-outpaint"),
             per_image: int = typer.Option(10, "--per-image", help="Synthetic images per reference."),
             dataset: str = DatasetOpt, root: Path | None = RootOpt, classes: str | None = ClassesOpt,
             n_test: int = 40, n_val: int = 40, split_seed: int = 0,
             n_real: int | None = typer.Option(None, help="Only references in this n_real subset (with --seed)."),
             seed: int = 0, steps: int = 50, guidance: float = 3.0, batch_size: int = 16,
             shard: str = typer.Option("0/1", help="i/n: this worker's share."),
             out: Path = typer.Option(..., "--out", help="The synthetic store folder.")):
    """Generate K images per training-pool reference into a store (resumable, shardable)."""
    from dermsynth.generate.runner import make_backend, run_generation

    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        _fail(DermsynthError(f"--shard {shard!r}: use i/n, e.g. 0/4"))
    split = _split_for(dataset, root, classes, n_test, n_val, split_seed)
    refs = split.pool if n_real is None else split.train_subset(n_real, seed).assign(split="pool")
    kw = {"steps": steps, "guidance": guidance}
    if backend == "sd" and inpaint_model:
        kw["inpaint_model"] = inpaint_model
    res = run_generation(make_backend(backend, model, **kw), refs, method, per_image, out, batch_size, (i, n))
    Console().print(res)


@app.command()
def finetune(model: str = typer.Option(..., help="Stable Diffusion (inpainting) model: hub id or folder."),
             out: Path = typer.Option(..., help="Folder for the fine-tuned pipeline."),
             dataset: str = DatasetOpt, root: Path | None = RootOpt, classes: str | None = ClassesOpt,
             label: str | None = typer.Option(None, "--class", help="One class (default: one model for all)."),
             n_test: int = 40, n_val: int = 40, split_seed: int = 0, lora: bool = typer.Option(False),
             lora_rank: int = 4, lr: float = 5e-6, epochs: int = 4, batch_size: int = 4, resolution: int = 512,
             prior_preservation: bool = typer.Option(False), max_steps: int | None = None):
    """DreamBooth (or LoRA) fine-tuning on training-pool images only (authors' defaults)."""
    from dermsynth.generate.dreambooth import DreamBoothConfig, finetune_from_split

    cfg = DreamBoothConfig(lr=lr, epochs=epochs, batch_size=batch_size, resolution=resolution, lora=lora,
                           lora_rank=lora_rank, prior_preservation=prior_preservation, max_steps=max_steps)
    res = finetune_from_split(model, _split_for(dataset, root, classes, n_test, n_val, split_seed), out, label=label,
                              cfg=cfg)
    Console().print({k: v for k, v in res.items() if k != "train_losses"})


@audit_app.command("leakage")
def audit_leakage(dataset: str = DatasetOpt, root: Path | None = RootOpt, classes: str | None = ClassesOpt,
                  n_test: int = 40, n_val: int = 40, split_seed: int = 0,
                  store: Path | None = typer.Option(None, help="Synthetic store to check."),
                  finetune_manifest: Path | None = typer.Option(None, help="File of generator training ids.")):
    """Prove that no held-out image reached a generator or a training set; exit 1 on a violation."""
    from dermsynth.analysis.leakage import audit
    from dermsynth.generate.store import read_manifest

    split = _split_for(dataset, root, classes, n_test, n_val, split_seed)
    manifest = read_manifest(store) if store else None
    ft = finetune_manifest.read_text().split() if finetune_manifest else None
    problems = audit(split, manifest, ft)
    for p in problems:
        Console().print(f"[red]✗[/] {p}")
    if problems:
        Console().print(f"[bold red]LEAK:[/] {len(problems)} violation(s)")
        raise typer.Exit(1)
    n_syn = 0 if manifest is None else len(manifest)
    Console().print(f"[bold green]CLEAN:[/] no held-out image among {n_syn} synthetic references, "
                    f"{len(ft or [])} fine-tuning images or split groups")


def _split_for(dataset, root, classes, n_test, n_val, split_seed):
    from dermsynth.train.run import load_split
    from dermsynth.train.spec import RunSpec

    return load_split(RunSpec(dataset=dataset, root=str(root) if root else None, classes=classes, n_test=n_test,
                              n_val=n_val, split_seed=split_seed))


@app.command()
def embed(store: Path = typer.Option(..., help="Synthetic store."), dataset: str = DatasetOpt,
          root: Path | None = RootOpt, classes: str | None = ClassesOpt, n_test: int = 40, n_val: int = 40,
          split_seed: int = 0, encoder: str = typer.Option("clip", help="clip[:PATH_OR_ID] | timm:NAME | pixels"),
          out: Path = typer.Option(Path("embedding"), help="Folder for figures and numbers."),
          umap: bool = typer.Option(True, help="Also draw a UMAP projection.")):
    """Fig. 2: PCA/UMAP projections, cosine distances real–real, real–synthetic, synthetic–reference."""
    from dermsynth.analysis.embeddings import make_encoder
    from dermsynth.analysis.synthetic_study import embedding_study

    res = embedding_study(_split_for(dataset, root, classes, n_test, n_val, split_seed), store, make_encoder(encoder),
                          out, umap=umap)
    Console().print(res["means"])
    Console().print(f"→ {out}")


@app.command()
def quality(store: Path = typer.Option(..., help="Synthetic store."), dataset: str = DatasetOpt,
            root: Path | None = RootOpt, classes: str | None = ClassesOpt, n_test: int = 40, n_val: int = 40,
            split_seed: int = 0, encoder: str = typer.Option("clip", help="clip[:PATH_OR_ID] | timm:NAME | pixels"),
            out: Path = typer.Option(Path("quality"))):
    """FID, KID, precision/recall per method and class, with bootstrap CIs."""
    from dermsynth.analysis.embeddings import make_encoder
    from dermsynth.analysis.synthetic_study import quality_study

    table = quality_study(_split_for(dataset, root, classes, n_test, n_val, split_seed), store, make_encoder(encoder),
                          out)
    Console().print(table[["group", "n_real", "n_synthetic", "fid", "kid", "precision", "recall"]].to_string())


@audit_app.command("memorization")
def audit_memorization_cmd(store: Path = typer.Option(..., help="Synthetic store."), dataset: str = DatasetOpt,
                           root: Path | None = RootOpt, classes: str | None = ClassesOpt, n_test: int = 40,
                           n_val: int = 40, split_seed: int = 0,
                           encoder: str = typer.Option("clip", help="clip[:PATH] | timm:NAME | pixels"),
                           quantile: float = typer.Option(0.01, help="Calibration quantile of real NN distances."),
                           max_flagged: int = typer.Option(0, help="Exit non-zero above this many flags."),
                           out: Path = typer.Option(Path("memorization"))):
    """Nearest real neighbours of every synthetic image; flags copies; exit 1 above --max-flagged."""
    from dermsynth.analysis.embeddings import make_encoder
    from dermsynth.analysis.synthetic_study import memorization_study

    enc = None if encoder == "pixels" else make_encoder(encoder)
    table = memorization_study(_split_for(dataset, root, classes, n_test, n_val, split_seed), store, enc, out,
                               quantile)
    flagged = table[table["flagged"]]
    for _, r in flagged.head(20).iterrows():
        Console().print(f"[red]✗[/] {r['synth_id']} ({r['method']}) is a near-copy of a real image")
    Console().print(f"{len(flagged)} of {len(table)} synthetic images flagged → {out / 'memorization.csv'}")
    if len(flagged) > max_flagged:
        raise typer.Exit(1)


@app.command()
def quickstart(out: Path = typer.Option(Path("quickstart-out"), help="Where the study and report go."),
               workers: int | None = typer.Option(None, help="Parallel training runs.")):
    """A whole small study on the demo data, offline, on a CPU, ending with a report."""
    from dermsynth.quickstart import quickstart as run_quickstart

    run_quickstart(out, workers=workers)


@app.command()
def version():
    """Print the version."""
    from dermsynth import __version__

    print(__version__)


def main() -> None:  # pragma: no cover
    try:
        app()
    except DermsynthError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
