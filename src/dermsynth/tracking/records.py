"""A run record as a tracker sees it: flat parameters, numeric metrics, tags and a name.

Pure functions of the record (no tracker imported), so what a study logs can be checked
against its records without a tracking store.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Spec fields that differ between runs without being a setting of the cell.
NOT_CELL = {"seed", "data_digest", "synthetic_fingerprint", "synthetic_store", "cache_dir", "threads", "device",
            "stream", "loader_workers", "save_checkpoint", "checkpoint_max_mb"}
_BAD_KEY = re.compile(r"[^\w\-. /]")  # MLflow keys: letters, digits, _ - . space /


def clean_key(key: str) -> str:
    """``key`` with characters MLflow refuses in a metric or parameter name replaced by ``_``."""
    return _BAD_KEY.sub("_", key)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts as dotted keys; lists as JSON; None as the string "None" (MLflow params are strings)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = clean_key(f"{prefix}{key}")
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | dict):
            out[name] = json.dumps(value, sort_keys=True)
        else:
            out[name] = str(value)
    return out


def params_of(record: dict) -> dict[str, str]:
    """The run spec, flattened: every setting of the run, as MLflow parameters."""
    return flatten(record["spec"])


def metrics_of(record: dict) -> dict[str, float]:
    """Headline metrics, per class and per skin-type group (with gaps), training size and cost."""
    m = record["metrics"]
    out: dict[str, float | None] = {k: m.get(k) for k in ("accuracy", "balanced_accuracy", "top3_accuracy", "auroc",
                                                           "macro_f1", "sensitivity", "specificity", "n_test")}
    out["ece"] = m.get("calibration", {}).get("ece")
    out.update({f"accuracy.class.{c}": v for c, v in m.get("per_class_accuracy", {}).items()})
    fairness = m.get("fairness") or {}
    for group, row in (fairness.get("groups") or {}).items():
        out.update({f"{metric}.group.{group}": row.get(metric)
                    for metric in ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "ece")})
        out[f"n_test.group.{group}"] = row.get("n")
    out.update({f"{metric}.group_gap": gap["gap"] for metric, gap in (fairness.get("gaps") or {}).items()})
    out["equalized_odds_difference"] = fairness.get("equalized_odds_difference")
    out.update({"n_train": record.get("n_train"), "n_train_synthetic": record.get("n_train_synthetic"),
                "wall_seconds": record.get("wall_seconds")})
    fit = record.get("fit") or {}
    out.update({k: fit.get(k) for k in ("epochs_run", "images_per_second")})
    return {clean_key(k): float(v) for k, v in out.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def cell_fields(records: list[dict]) -> list[str]:
    """The spec fields that vary between a study's runs, seed and pinned inputs aside: its grid axes."""
    if len(records) < 2:
        return []
    keys = sorted(set().union(*(r["spec"] for r in records)) - NOT_CELL)
    return [k for k in keys if len({json.dumps(r["spec"].get(k), sort_keys=True) for r in records}) > 1]


def cell_of(record: dict, fields: list[str]) -> str:
    """The run's grid cell as ``field=value`` pairs (``-`` for a study of one cell)."""
    return " ".join(f"{k}={json.dumps(record['spec'].get(k))}" for k in fields) or "-"


def tags_of(record: dict, fields: list[str]) -> dict[str, str]:
    """What identifies the run: its id (the key that prevents duplicates), cell, seed, digests."""
    spec, env = record["spec"], record.get("environment") or {}
    lock = env.get("lock") or {}
    tags = {"dermsynth.run_id": record["run_id"], "dermsynth.cell": cell_of(record, fields),
            "dermsynth.seed": str(spec.get("seed")), "dermsynth.data_digest": str(spec.get("data_digest")),
            "dermsynth.synthetic_fingerprint": str(spec.get("synthetic_fingerprint")),
            "dermsynth.lock_sha256": str(lock.get("sha256")), "dermsynth.version": str(env.get("dermsynth"))}
    if record.get("external"):
        tags["dermsynth.external"] = str(record["external"].get("dataset"))
    return tags


def run_name(record: dict, fields: list[str]) -> str:
    cell = cell_of(record, fields)
    return (f"{cell} seed={record['spec'].get('seed')}" if cell != "-" else f"{record['run_id']}")
