"""``dermsynth data import-synthetic`` and ``data export-synthetic``: synthetic stores to and
from WebDataset shards (the authors' released images, or a store shared as a data set)."""

from __future__ import annotations

from pathlib import Path

import typer

from dermsynth.cli import common as c
from dermsynth.errors import ConfigError

ListOpt = lambda what: typer.Option(None, help=f"Import only these {what} (comma-separated).")  # noqa: E731


def _names(value: str | None) -> set[str] | None:
    return None if value is None else {v.strip() for v in value.split(",") if v.strip()}


def references_for(dataset: str, root: Path | None):
    """The table every imported image's reference is looked up in: for Fitzpatrick 17k every row of
    its CSV (the photo present or not), else the data set's images."""
    if dataset == "fitzpatrick17k":
        from dermsynth.data.fitzpatrick import reference_rows

        if root is None:
            raise ConfigError("import-synthetic --dataset fitzpatrick17k needs --root, the folder holding "
                              "fitzpatrick17k.csv: released images name their references by its md5hash")
        return reference_rows(root)
    from dermsynth.data.registry import load_dataset

    return load_dataset(dataset, root)


@c.handles_errors
def import_synthetic_command(
        shards: list[str] = typer.Argument(..., help="Shards: paths, globs, brace patterns "
                                           "(shard-{00000..00009}.tar) or URLs webdataset opens (https:, pipe:)."),
        out: Path = typer.Option(..., "--out", help="The folder for the stores: released images go to "
                                 "OUT/finetune and OUT/pretrained, a dermsynth export to OUT itself."),
        dataset: str = typer.Option("fitzpatrick17k", "--dataset", help="The data set the images were made from "
                                    "(their references are looked up in it)."),
        root: Path | None = c.RootOpt,
        labels: str | None = ListOpt("classes"),
        methods: str | None = ListOpt("methods (text-to-image, inpaint, in-then-outpaint)"),
        variants: str | None = ListOpt("generator variants (finetune, pretrained)"),
        tags: str | None = ListOpt("release tags (generations1, new-fitz-diseases, …)"),
        max_per_reference: int | None = typer.Option(None, min=1, help="At most K images per reference image, "
                                                     "method and variant (the paper used up to 10)."),
        as_json: bool = c.JsonOpt):
    """Import WebDataset shards (the authors' released images or a dermsynth export) into synthetic
    stores, streaming: resumable after a kill, every skipped sample counted with its reason."""
    from dermsynth.data.shard_stream import expand_shards
    from dermsynth.data.synthetic_import import Selection, import_synthetic

    found = expand_shards(shards)
    selection = Selection(labels=_names(labels), methods=_names(methods), variants=_names(variants),
                          tags=_names(tags), max_per_reference=max_per_reference)
    res = import_synthetic(found, out, references_for(dataset, root), selection)

    def human():
        c.say(f"read {res['read']} samples from {res['shards']} shard(s); imported {res['imported']} "
              f"({res['bytes_written'] / 2**20:.1f} MiB written, {res['disk_free'] / 2**30:.1f} GiB free)")
        for why, n in sorted(res["skipped"].items()):
            c.say(f"  skipped {n}: {why}")
        for why, n in sorted(res["not_selected"].items()):
            c.say(f"  not selected {n}: by {why}")
        for why in res["truncated"].values():
            c.say(f"  truncated: {why} — its complete samples are in; rerun after fetching it again to read the rest")
        for variant, s in res["stores"].items():
            c.say(f"store {s['store']} ({variant}): {s['images']} images")

    c.emit(res, as_json, human)


@c.handles_errors
def export_synthetic_command(
        store: Path = typer.Argument(..., help="The synthetic store to share."),
        out: Path = typer.Option(..., "--out", help="The folder for the shards, README.md (the dataset card), "
                                 "references.txt and generator_training_ids.txt."),
        shard_size: int = typer.Option(1000, min=1, help="Images per shard."),
        licence: str = typer.Option("other", "--license", help="The card's licence (a Hub licence id); the "
                                    "source images' terms bind the synthetic ones too."),
        as_json: bool = c.JsonOpt):
    """Write a store as WebDataset shards with a dataset card, readable by `data import-synthetic`."""
    from dermsynth.data.synthetic_export import export_synthetic

    res = export_synthetic(store, out, shard_size, licence)
    c.emit(res, as_json, f"{res['images']} images in {len(res['shards'])} shard(s), "
                         f"{res['bytes'] / 2**20:.1f} MiB → {out} (card: {res['card']})")
