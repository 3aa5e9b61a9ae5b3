"""Paths are not identity: a study folder can move (scratch → project storage), be copied, or
be named two ways (``runs/fig3`` and ``/home/me/runs/fig3``) and still be the same study.

Run ids hash ``synthetic_store``, which is a path inside the study folder. So that a moved
study keeps its run ids, each study remembers the folder path it was first run under (its
*anchor*, in ``OUT/experiment.json``); runs hash the store's path under the anchor
(``RunSpec.synthetic_store_id``) while reading it where it is now. Studies from before the
anchor was recorded have it inferred from their records. Likewise the claim check compares
configs without ``base.cache_dir``, which the quickstart and rehearsals put inside the folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from dermsynth import files

ANCHOR_KEY = "study_path"


def study_anchor(out: str | Path) -> Path:
    """The path ``out`` was first run under: recorded, else inferred from a record's store path
    (a store the experiment made lies directly in the folder), else ``out`` itself."""
    out = Path(out)
    marker = out / "experiment.json"
    if marker.exists():
        claim = files.read_json(marker)
        if claim.get(ANCHOR_KEY):
            return Path(claim[ANCHOR_KEY])
    runs = out / "runs"
    if runs.is_dir():
        for path in sorted(runs.glob("*.json")):
            if path.name.endswith(".failed.json"):
                continue
            spec = files.read_json(path).get("spec", {})
            store = spec.get("synthetic_store_id") or spec.get("synthetic_store")
            if store and spec.get("synthetic_per_real") and Path(store).name.startswith("synthetic") and \
                    (out / Path(store).name).is_dir():
                return Path(store).parent
    return out


def portable_digest(spec) -> str:
    """The config's digest as far as results go: without ``base.cache_dir`` (a path that moves with
    the folder), with the generator as its store identity sees it (generator_spec.identity_view:
    no operational fields, the unused backend's table at the flat spelling's defaults), so a
    folder made by the same config before the generator tables existed is still its own."""
    import hashlib
    import json

    from dermsynth.experiments.generator_spec import identity_view
    from dermsynth.experiments.spec import OPERATIONAL_FIELDS

    payload = spec.model_dump(exclude=OPERATIONAL_FIELDS)
    payload["base"] = {k: v for k, v in spec.base.items() if k != "cache_dir"}
    if spec.generator is not None:
        payload["generator"] = identity_view(spec.generator)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def same_config(claim: dict, spec) -> bool:
    """Whether ``OUT/experiment.json``'s config is ``spec`` up to where the folder lies."""
    from dermsynth.errors import ConfigDeprecationWarning, DermsynthError
    from dermsynth.experiments.spec import validate_experiment

    if claim.get("digest") == spec.digest():
        return True
    if "spec" not in claim:
        return False
    try:
        with warnings.catch_warnings():  # our own record in an older spelling: nothing for the user to change
            warnings.simplefilter("ignore", ConfigDeprecationWarning)
            old = validate_experiment(claim["spec"], "experiment.json")
    except DermsynthError:  # written by a version whose fields have changed since
        return False
    return portable_digest(old) == portable_digest(spec)


def locate_store(recorded: str | Path, out: str | Path) -> Path:
    """A store a record names, where it is now: the folder of that name inside the study ``out``
    when the experiment made it there (it lay in the folder the study first ran under) or the
    recorded path no longer holds a store (the study has moved); else the recorded path. A copied
    study so reads its own copy of its store, not the original's."""
    from dermsynth.data.synthetic_store import is_store

    recorded = Path(recorded)
    moved = Path(out) / recorded.name
    own = recorded.parent == study_anchor(out)
    return moved if is_store(moved) and (own or not is_store(recorded)) else recorded
