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
               drop: bool = typer.Option(False, help="Also write a cleaned table keeping one image per cluster.")):
    """Find exact and near-duplicate images within and across classes."""
    from dermsynth.data.clean import find_duplicates
    from dermsynth.data.datasets import load_dataset

    try:
        table = load_dataset(dataset, root, classes=classes)
    except DermsynthError as exc:
        _fail(exc)
    rep = find_duplicates(table, max_distance)
    rep.pairs.to_csv(out, index=False)
    Console().print(f"{rep.summary()} → {out}")
    if drop:
        kept = table.drop(index=rep.to_drop())
        cleaned = out.with_name(out.stem + "_clean_table.csv")
        kept.to_csv(cleaned, index=False)
        Console().print(f"kept {len(kept)} of {len(table)} images → {cleaned}")


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
