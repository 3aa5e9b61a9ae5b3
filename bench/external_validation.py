"""Internal vs external accuracy on real data: Fitzpatrick 17k images from one source atlas
(dermaamin.com) train the classifiers; the other atlas (atlasdermatologico.com.br) is held out
entirely as "another site" and evaluated with `evaluate_runs` — the distribution shift a model
meets in another clinic. Needs ../shared/data/fitzpatrick17k (skips otherwise).

    python bench/external_validation.py [--seeds 2] [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import torch

F17K = Path(__file__).resolve().parents[2] / "shared" / "data" / "fitzpatrick17k"
CLASSES = ["basal cell carcinoma", "squamous cell carcinoma", "melanoma", "folliculitis"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--n-real", type=int, default=64)
    args = ap.parse_args()
    if not (F17K / "fitzpatrick17k.csv").exists():
        print(f"skipped: {F17K} not present")
        return
    from dermsynth.analysis.external_report import internal_vs_external
    from dermsynth.experiments.external_evaluation import evaluate_runs
    from dermsynth.experiments.results import load_records, results_table
    from dermsynth.experiments.runner import run_experiment
    from dermsynth.experiments.spec import validate_experiment
    from dermsynth.models.precision_rule import cpu_name

    print(f"CPU: {cpu_name()}, {os.cpu_count()} threads, torch {torch.get_num_threads()} threads")
    meta = pd.read_csv(F17K / "fitzpatrick17k.csv")
    meta["site"] = meta["url"].str.extract(r"https?://(?:www\.)?([^/]+)")[0]
    meta = meta[meta["label"].isin(CLASSES)]
    work = Path(tempfile.mkdtemp(prefix="dermsynth-external-"))
    other = meta.loc[meta["site"] == "atlasdermatologico.com.br", "md5hash"]
    (work / "other_site.txt").write_text("\n".join(other))
    print(meta.groupby(["label", "site"]).size().unstack(fill_value=0).to_string())
    spec = validate_experiment({
        "name": "f17k-by-site", "seeds": args.seeds,
        "base": dict(dataset="fitzpatrick17k", root=str(F17K), classes=",".join(CLASSES), n_test=20, n_val=10,
                     exclude_file=str(work / "other_site.txt"), image_size=96, backbone="resnet18",
                     transforms=True, max_epochs=args.epochs, patience=5, lr=1e-3, cache_dir=str(work / "cache")),
        "grid": {"n_real": [args.n_real]}})
    run_experiment(spec, work / "exp")
    res = evaluate_runs(work / "exp", "fitzpatrick17k", F17K, classes=",".join(CLASSES),
                        ids_file=work / "other_site.txt", name="atlasdermatologico")
    frame = internal_vs_external(results_table(work / "exp"), results_table(work / "exp" / "external" /
                                                                           "atlasdermatologico"),
                                 load_records(work / "exp" / "external" / "atlasdermatologico"))
    print(f"\ntrained on dermaamin.com ({args.n_real} per class, {args.seeds} seeds); external = "
          f"atlasdermatologico.com.br, {res['n_images']} images")
    print(frame.round(3).to_string(index=False))
    for rec in load_records(work / "exp" / "external" / "atlasdermatologico"):
        m = rec["metrics"]
        fair = m.get("fairness", {})
        print(json.dumps({"run": rec["run_id"], "internal_acc": rec["internal_metrics"]["accuracy"],
                          "external_acc": m["accuracy"], "balanced": m["balanced_accuracy"], "macro_f1": m["macro_f1"],
                          "auroc": m["auroc"], "ece": m["calibration"]["ece"],
                          "per_group_acc": {g: round(v["accuracy"], 3) for g, v in fair.get("groups", {}).items()},
                          "group_gap": fair.get("gaps", {}).get("accuracy"),
                          "eod": fair.get("equalized_odds_difference")}, default=str))
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    main()
