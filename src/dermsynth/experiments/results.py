"""Reading an experiment's results: plain files under ``OUT/runs`` (one JSON record per run)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def runs_dir(out: str | Path) -> Path:
    return Path(out) / "runs"


def needs_rerun(record_path: Path, planned_content_digest: str | None) -> bool:
    """A finished run whose images changed since it ran (same run id, other bytes) runs again;
    records from before content digests existed are kept as they are."""
    if planned_content_digest is None:
        return False
    try:
        old = json.loads(Path(record_path).read_text())["spec"].get("content_digest")
    except (OSError, ValueError, KeyError):
        return True
    return old is not None and old != planned_content_digest


def load_records(out: str | Path) -> list[dict]:
    """Every finished run's record (failed runs' ``*.failed.json`` are not results)."""
    rdir = runs_dir(out)
    return [json.loads(p.read_text()) for p in sorted(rdir.glob("*.json")) if not p.name.endswith(".failed.json")]


def results_table(out: str | Path, records: list[dict] | None = None) -> pd.DataFrame:
    """One row per finished run: its spec fields and metrics, flattened (``records``: already read)."""
    rows = []
    for rec in load_records(out) if records is None else records:
        m = rec["metrics"]
        row = {"run_id": rec["run_id"], **{k: (json.dumps(v) if isinstance(v, list | dict) else v)
                                           for k, v in rec["spec"].items()}}
        row.update({k: m[k] for k in ("accuracy", "balanced_accuracy", "top3_accuracy", "n_test")})
        row.update({k: m.get(k) for k in ("auroc", "macro_f1", "sensitivity", "specificity", "degenerate",
                                           "top_predicted_class", "top_predicted_share",
                                           "majority_class_rate")})
        row["ece"] = m.get("calibration", {}).get("ece")
        row.update({f"acc_class:{c}": v for c, v in m["per_class_accuracy"].items()})
        row.update({f"acc_group:{g}": v for g, v in m.get("per_skin_group_accuracy", {}).items()})
        row.update({"n_train": rec["n_train"], "n_train_synthetic": rec["n_train_synthetic"],
                    "epochs_run": rec["fit"]["epochs_run"], "wall_seconds": rec["wall_seconds"],
                    "images_per_second": rec["fit"]["images_per_second"]})
        rows.append(row)
    return pd.DataFrame(rows)
