"""``dermsynth data``: info, download, clean."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dermsynth.cli import common as c
from dermsynth.errors import ConfigError, DataError

app = typer.Typer(no_args_is_help=True)


@app.command("info")
@c.handles_errors
def data_info(dataset: str = c.DatasetOpt, root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt,
              check_images: bool = typer.Option(False, help="Decode every image to find unreadable ones."),
              as_json: bool = c.JsonOpt):
    """Per-class and skin-type counts, missing and unreadable images."""
    from dermsynth.data.info import dataset_info

    info = dataset_info(dataset, root, classes, check_images=check_images)

    def human():
        t = Table(title=f"{dataset}: {info['present']} images present, {info['missing']} missing")
        for col, just in (("class", "left"), ("images", "right"), ("missing", "right")):
            t.add_column(col, justify=just)
        for name, n in info["per_class"].items():
            t.add_row(name, str(n), str(info["missing_per_class"].get(name, 0)))
        c.out_console.print(t)
        c.say(f"skin types: {c.plain(info['skin_types'])}")
        if info["unreadable"]:
            c.say(f"{len(info['unreadable'])} unreadable: " + "; ".join(f"{u['path']} ({u['reason']})"
                                                                       for u in info["unreadable"][:10]))

    c.emit(info, as_json, human)


@app.command("download")
@c.handles_errors
def data_download(dataset: str = typer.Option("fitzpatrick17k", "--dataset", help="The data set to fetch "
                                              "(fitzpatrick17k: the others are not downloaded)."),
                  root: Path = typer.Option(..., "--root", help="Folder holding fitzpatrick17k.csv; the images go "
                                            "to ROOT/images/."),
                  workers: int = typer.Option(8, help="Parallel downloads."),
                  retries: int = typer.Option(3, help="Tries per image before it is listed as failed."),
                  timeout: float = typer.Option(15.0, help="Seconds to wait for one server response."),
                  limit: int | None = typer.Option(None, help="Only the first N rows (a trial run)."),
                  as_json: bool = c.JsonOpt):
    """Fetch Fitzpatrick 17k images from the CSV's URLs: verified, resumable, atomic.

    Writes ROOT/images/<md5hash>.jpg and, when some fail, ROOT/download_failures.csv.
    """
    from dermsynth.data.download import download_images
    from dermsynth.data.fitzpatrick import read_metadata

    if dataset != "fitzpatrick17k":
        raise ConfigError(f"download supports --dataset fitzpatrick17k, not {dataset!r}")
    meta = read_metadata(root)
    if limit:
        meta = meta.head(limit)
    res = download_images(meta, root, workers=workers, retries=retries, timeout=timeout)
    counts = {k: int(res["status"].eq(k).sum()) for k in ("ok", "skipped", "failed")}
    failed = res[res["status"] == "failed"]
    if len(failed):
        failed.to_csv(Path(root) / "download_failures.csv", index=False)
    if res.attrs.get("stopped") or (len(failed) and not counts["ok"] and not counts["skipped"]):
        first = failed["detail"].iloc[0]
        why = (f"stopped after {int(failed['connection'].sum())} connection failures ({first})"
               if res.attrs.get("stopped") else f"all {len(failed)} failed (first: {first})")
        raise DataError(f"{why}: is this machine offline? Re-run when it can reach the URLs (verified images are "
                        f"kept; it resumes); failures listed in {Path(root) / 'download_failures.csv'}")
    c.emit({**counts, "failures": failed[["md5hash", "detail"]].to_dict(orient="records")}, as_json,
         f"downloaded {counts['ok']}, already present {counts['skipped']}, failed {counts['failed']}"
         + (f" (listed in {Path(root) / 'download_failures.csv'}; re-run to retry)" if len(failed) else ""))


@app.command("clean")
@c.handles_errors
def data_clean(dataset: str = c.DatasetOpt, root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt,
               max_distance: int = typer.Option(4, help="pHash Hamming distance for near duplicates."),
               to: Path | None = typer.Option(None, "--to", help="The pair report CSV (default duplicates.csv)."),
               drop: bool = typer.Option(False, help="Also write a cleaned table keeping one image per cluster."),
               embedding: str | None = typer.Option(None, help="Also compare embeddings: clip[:PATH] | timm:NAME."),
               max_cosine: float = typer.Option(0.02, help="Cosine distance for embedding near-duplicates."),
               out: Path | None = typer.Option(None, "--out", hidden=True, help="Deprecated spelling of --to."),
               as_json: bool = c.JsonOpt):
    """Find exact and near-duplicate images within and across classes (writes FILE and FILE_clusters.csv)."""
    from dermsynth.data.cache import embed_table
    from dermsynth.data.duplicates import find_duplicates
    from dermsynth.data.registry import load_dataset

    out = c.renamed(to, out, "--out", "--to") or Path("duplicates.csv")
    table = load_dataset(dataset, root, classes=classes)
    embed = None
    if embedding:
        from dermsynth.models.encoders import make_encoder

        encoder = make_encoder(embedding)
        embed = lambda t: embed_table(t, encoder)  # noqa: E731
    rep = find_duplicates(table, max_distance, embed=embed, max_cosine=max_cosine)
    out.parent.mkdir(parents=True, exist_ok=True)
    rep.pairs.to_csv(out, index=False)
    clusters = out.with_name(out.stem + "_clusters.csv")
    table.assign(cluster=rep.clusters)[["id", "path", "label", "cluster"]].dropna(subset=["cluster"]).to_csv(
        clusters, index=False)
    result = {**rep.summary(), "pairs_file": str(out), "clusters_file": str(clusters)}
    if drop:
        kept = table.drop(index=rep.to_drop())
        cleaned = out.with_name(out.stem + "_clean_table.csv")
        kept.to_csv(cleaned, index=False)
        result.update(kept=len(kept), cleaned_table=str(cleaned))
    c.emit(result, as_json, f"{c.plain(rep.summary())} → {out}" + (f"; kept {result['kept']} of {len(table)} images → "
                                                        f"{result['cleaned_table']}" if drop else ""))
