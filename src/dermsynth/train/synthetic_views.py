"""Reading a synthetic store's filtered views: what a run trains on when it has a synthetic filter.

The filter stage (``audits/synthetic_filter.py``) scores a store's images and writes id-only
views (``STORE/views/<filter>-keep<f>.json``); training only reads them. Reading lives here, in
the training layer, so that training never imports the audits that score images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dermsynth import files
from dermsynth.data.synthetic_store import store_digest
from dermsynth.errors import DataError
from dermsynth.train.allocation import needed_per_reference
from dermsynth.train.spec import RunSpec


def views_dir(store: str | Path) -> Path:
    return Path(store) / "views"


def view_path(store: str | Path, name: str, keep: float) -> Path:
    return views_dir(store) / f"{name}-keep{keep:g}.json"


@dataclass
class View:
    name: str
    keep: float
    digest: str
    store_digest: str
    ids: set[str]


def read_view(store: str | Path, name: str, keep: float) -> View:
    path = view_path(store, name, keep)
    if not path.exists():
        raise DataError(f"no filtered view {path}: synthetic_filter={name!r} with filter_keep={keep:g} is made by "
                        "an experiment's filter stage (`dermsynth experiment run`); run the experiment")
    v = files.read_json(path)
    return View(v["filter"], v["keep"], v["digest"], v["store_digest"], set(v["kept_ids"]))


def view_digest(store: str | Path, name: str, keep: float) -> str | None:
    path = view_path(store, name, keep)
    return files.read_json(path)["digest"] if path.exists() else None


def filtered_manifest(manifest: pd.DataFrame, spec: RunSpec, real: pd.DataFrame) -> pd.DataFrame:
    """``manifest`` restricted to the run's view, after checking that every class and method keeps
    enough images for ``synthetic_per_real`` per reference of ``real`` (the run's references)."""
    view = read_view(spec.synthetic_store, spec.synthetic_filter, spec.filter_keep)
    current = store_digest(spec.synthetic_store)
    if view.store_digest != current:
        raise DataError(f"the filtered view {view_path(spec.synthetic_store, view.name, view.keep)} was made from "
                        f"another state of the store ({view.store_digest}, now {current}); run the experiment "
                        "again to refilter")
    out = manifest[manifest["synth_id"].astype(str).isin(view.ids)]
    check_enough(out, manifest, spec, real)
    return out


def check_enough(kept: pd.DataFrame, available: pd.DataFrame, spec: RunSpec, real: pd.DataFrame) -> None:
    """Raise when some class and method keeps fewer images than the run needs (k per reference, or
    its allocation's quota)."""
    k = spec.synthetic_per_real
    need = needed_per_reference(spec, real)
    methods = spec.synthetic_methods or sorted(available["method"].unique())
    for (label, refs) in real.groupby("label", sort=True):
        ref_ids = sorted(set(refs["id"].astype(str)))
        mine = kept[kept["ref_id"].astype(str).isin(ref_ids) & kept["method"].isin(methods)]
        per_ref = mine.groupby("ref_id").size().reindex(ref_ids, fill_value=0)
        wanted = need.reindex(ref_ids).fillna(k)
        if (per_ref >= wanted).all():
            continue
        short = per_ref[per_ref < wanted]
        have = len(mine)
        total = int((available["ref_id"].astype(str).isin(ref_ids) & available["method"].isin(methods)).sum())
        named = f"method {methods[0]!r}" if len(methods) == 1 else f"methods {list(methods)}"
        raise DataError(
            f"synthetic_filter={spec.synthetic_filter!r} with filter_keep={spec.filter_keep:g} keeps {have} of {total} "
            f"synthetic images of class {label!r}, {named}, for this run's {len(ref_ids)} references ({len(short)} "
            f"keep fewer than they are given); synthetic_per_real={k} with synthetic_allocation="
            f"{spec.synthetic_allocation} needs {int(wanted.sum())}: raise filter_keep, lower synthetic_per_real or "
            "generate more per image")
