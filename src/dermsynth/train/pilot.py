"""The real-only pilot that a ``by_error`` allocation asks where the classifier fails.

The pilot is the run itself without synthetic data: the same real images, seed, backbone, loss
and schedule (every synthetic-arm field at its default). It is trained, evaluated on the
split's validation images and nothing else, and its error per class or skin-type group sets
where the synthetic budget goes (train/allocation.py). The test images are never read, so the
allocation cannot carry information from the test set into training. Its validation
predictions are kept under ``cache_dir/pilots/`` by the pilot's run id and the bytes of the
split's images (``content_digest``), and are used again only for the same validation ids and
labels, so the cells that share a pilot share its predictions and a re-run does not train it
again. The errors are computed once per run and the record carries the ones the run used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermsynth import files
from dermsynth.data.splits import Split
from dermsynth.train.allocation import BY_ERROR, over_skin_types, strata
from dermsynth.train.fitting import device_for, fit_and_predict
from dermsynth.train.spec import RunSpec, real_only_fields
from dermsynth.train.training_set import training_table


def pilot_spec(spec: RunSpec) -> RunSpec:
    """The real-only run whose validation error a ``by_error`` allocation follows."""
    return spec.model_copy(update={**real_only_fields(), "synthetic_fingerprint": None, "filter_digest": None,
                                   "save_checkpoint": False})


def pilot_path(spec: RunSpec) -> Path:
    content = (spec.content_digest or "unpinned")[:16]
    return Path(spec.cache_dir) / "pilots" / f"{pilot_spec(spec).run_id()}-{content}.json"


def pilot_predictions(spec: RunSpec, split: Split) -> dict:
    """The pilot's run id and its predictions on the validation images (trained once, then read
    where the validation ids and labels are the same)."""
    path = pilot_path(spec)
    val = split.val
    if path.exists():
        kept = files.read_json(path)
        if kept["id"] == val["id"].astype(str).tolist() and kept["label"] == val["label"].astype(str).tolist():
            return kept
    pilot = pilot_spec(spec)
    classes = sorted(split.table["label"].unique())
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # the run's own random streams are the same with or without a pilot
        state = np.random.get_state()
        torch.manual_seed(pilot.seed)
        np.random.seed(pilot.seed % 2**32)
        try:
            _, probs, _, _, _ = fit_and_predict(pilot, split, training_table(pilot, split), split.val, classes,
                                                device_for(pilot))
        finally:
            np.random.set_state(state)
    out = {"run_id": pilot.run_id(), "id": val["id"].astype(str).tolist(), "label": val["label"].astype(str).tolist(),
           "predicted": [classes[i] for i in probs.argmax(1)]}
    files.write_json(path, out)
    return out


def pilot_errors(spec: RunSpec, split: Split) -> dict:
    """The pilot's validation error per stratum of ``spec.synthetic_allocation`` (class or skin-type
    group, the groups as the split says now), with the validation images each error rests on and
    the pilot's run id."""
    pred = pilot_predictions(spec, split)
    val = split.val.reset_index(drop=True)
    wrong = pd.Series(val["label"].astype(str).to_numpy() != np.asarray(pred["predicted"]), dtype=float)
    key = strata(val, spec.synthetic_allocation).to_numpy()
    by = wrong.groupby(key)
    return {"pilot_run_id": pred["run_id"], "over": "skin_types" if over_skin_types(spec.synthetic_allocation)
            else "classes",
            "errors": {str(k): round(float(v), 6) for k, v in by.mean().items()},
            "n_val": {str(k): int(v) for k, v in by.size().items()}}


def pilot_for(spec: RunSpec, split: Split) -> dict | None:
    """The pilot a run's allocation follows (:func:`pilot_errors`; its ``errors`` go to
    ``training_table``, the whole of it to the record), or None when the allocation has none."""
    if spec.synthetic_allocation not in BY_ERROR or spec.synthetic_per_real == 0:
        return None
    return pilot_errors(spec, split)
