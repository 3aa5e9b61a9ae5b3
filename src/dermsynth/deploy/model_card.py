"""A model card for one run (markdown + JSON): what it was trained on — real and synthetic, by
method and generator — how well it does overall and per skin-type group with CIs, on its own
test split and on every external data set it was evaluated on, and what it must not be used for.

The limits are the paper's own caveats, stated where a user of the model will read them.
"""

from __future__ import annotations

import json
from pathlib import Path

from dermsynth.stats import wilson_ci

LIMITS = [
    "Research use only: not a medical device, not validated for diagnosis or triage of patients.",
    "Fitzpatrick 17k labels come from dermatology atlases and were not confirmed by biopsy; DDI's are.",
    "Fitzpatrick skin type (FST) is not skin tone or ethnicity; FST labels in Fitzpatrick 17k were "
    "annotated from photographs and are noisy.",
    "Skin-type groups with few test images give wide intervals; a small gap between groups is not "
    "evidence of fairness.",
    "Synthetic training images come from a diffusion model and may carry its artefacts; performance on "
    "images from other cameras, clinics or populations can be lower (see external validation).",
]


def _pct_ci(p: float | None, n: int) -> dict:
    if p is None or not n:
        return {"value": p, "n": n}
    lo, hi = wilson_ci(p, n)
    return {"value": p, "ci_low": lo, "ci_high": hi, "n": n}


def _metric_block(m: dict) -> dict:
    n = m["n_test"]
    groups = {}
    for g, row in m.get("fairness", {}).get("groups", {}).items():
        groups[g] = {"accuracy": _pct_ci(row["accuracy"], row["n"]), "balanced_accuracy": row["balanced_accuracy"],
                     "macro_f1": row["macro_f1"], "auroc": row["auroc"], "ece": row["ece"], "n": row["n"]}
    fair = m.get("fairness", {})
    return {"n": n, "accuracy": _pct_ci(m["accuracy"], n), "balanced_accuracy": m.get("balanced_accuracy"),
            "macro_f1": m.get("macro_f1"), "auroc": m.get("auroc"), "ece": m.get("calibration", {}).get("ece"),
            "sensitivity": m.get("sensitivity"), "specificity": m.get("specificity"), "per_skin_group": groups,
            "group_gaps": fair.get("gaps", {}), "equalized_odds_difference": fair.get("equalized_odds_difference")}


def card_data(record: dict, meta: dict, external: list[dict] | None = None) -> dict:
    """The card's content as plain data (the JSON card; the markdown is rendered from it)."""
    spec = record["spec"]
    return {
        "model": {"run_id": record["run_id"], "backbone": meta["backbone"], "classes": meta["classes"],
                  "preprocessing": meta["preprocessing"], "weights_dtype": meta["dtype"],
                  "backbone_weights_at_start": record.get("backbone_weights"),
                  "dermsynth": record.get("environment", {}).get("dermsynth")},
        "training_data": {
            "dataset": spec["dataset"], "root": spec.get("root"), "split_seed": spec["split_seed"],
            "n_test": spec["n_test"], "n_val": spec["n_val"], "data_digest": spec.get("data_digest"),
            "real_images": record["n_train_real"], "synthetic_images": record["n_train_synthetic"],
            "synthetic_by_method": record.get("synthetic_by_method", {}),
            "synthetic_per_real": spec["synthetic_per_real"], "synthetic_store": spec.get("synthetic_store"),
            "generator_finetune": spec.get("generator_finetune"),
            "synthetic_fingerprint": spec.get("synthetic_fingerprint")},
        "training": {k: spec[k] for k in ("mode", "image_size", "transforms", "max_epochs", "optimizer", "lr",
                                          "batch_size", "seed")} | {"epochs_run": record["fit"]["epochs_run"]},
        "evaluation": {"internal_test": _metric_block(record["metrics"]),
                       "external": [{"dataset": e["external"]["dataset"], "root": e["external"]["root"],
                                     **_metric_block(e["metrics"])} for e in external or []]},
        "intended_use": "Research on skin-condition classifiers trained with and without synthetic images; "
                        "comparison with other models on the same data; not clinical use.",
        "limits": LIMITS,
    }


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.1f} %" if pct else f"{v:.3f}"


def _acc(a: dict) -> str:
    if a.get("ci_low") is None:
        return _fmt(a.get("value"), True)
    return f"{100 * a['value']:.1f} % ({100 * a['ci_low']:.1f}–{100 * a['ci_high']:.1f})"


def _eval_md(title: str, ev: dict) -> list[str]:
    lines = [f"### {title} (n = {ev['n']})", "",
             f"- accuracy {_acc(ev['accuracy'])} (95 % Wilson CI); balanced accuracy "
             f"{_fmt(ev['balanced_accuracy'], True)}; macro F1 {_fmt(ev['macro_f1'])}; ROC AUC {_fmt(ev['auroc'])}; "
             f"ECE {_fmt(ev['ece'])}"]
    if ev.get("sensitivity") is not None:
        lines.append(f"- sensitivity {_fmt(ev['sensitivity'], True)}, specificity {_fmt(ev['specificity'], True)} "
                     "(threshold 0.5)")
    if ev["per_skin_group"]:
        lines += ["", "| skin-type group | n | accuracy (95 % CI) | balanced acc. | macro F1 | ROC AUC | ECE |",
                  "|---|---|---|---|---|---|---|"]
        for g, row in ev["per_skin_group"].items():
            lines.append(f"| {g} | {row['n']} | {_acc(row['accuracy'])} | {_fmt(row['balanced_accuracy'], True)} | "
                         f"{_fmt(row['macro_f1'])} | {_fmt(row['auroc'])} | {_fmt(row['ece'])} |")
        gap = ev["group_gaps"].get("accuracy")
        if gap:
            lines.append(f"\nAccuracy gap between groups: {100 * gap['gap']:.1f} points "
                         f"(best {gap['best']}, worst {gap['worst']}); equalized-odds difference "
                         f"{_fmt(ev['equalized_odds_difference'])}.")
    return lines + [""]


def card_markdown(card: dict) -> str:
    m, d = card["model"], card["training_data"]
    synth = ", ".join(f"{k}: {v}" for k, v in d["synthetic_by_method"].items()) or "none"
    lines = [f"# Model card: {m['backbone']} skin-condition classifier (run {m['run_id']})", "",
             f"Classes ({len(m['classes'])}): {', '.join(m['classes'])}.", "",
             "## Training data", "",
             f"- data set: {d['dataset']} (split seed {d['split_seed']}, {d['n_test']} test and {d['n_val']} "
             f"validation images per class held out; data digest {d['data_digest']})",
             f"- real training images: {d['real_images']}",
             f"- synthetic training images: {d['synthetic_images']} ({synth}); {d['synthetic_per_real']} per real "
             f"image; generator fine-tuning: {d['generator_finetune'] or '–'}; store fingerprint "
             f"{d['synthetic_fingerprint'] or '–'}", "",
             "## Evaluation", ""]
    lines += _eval_md("Internal test split", card["evaluation"]["internal_test"])
    for ext in card["evaluation"]["external"]:
        lines += _eval_md(f"External: {ext['dataset']} ({ext['root']})", ext)
    p = m["preprocessing"]
    lines += ["## How to use", "",
              f"Input: RGB, shorter side resized to {p['image_size']} px and centre-cropped, scaled to [0, 1], "
              f"normalised with mean {p['mean']} and std {p['std']}. Load with timm (see README.md in this folder) "
              "or `torch.hub.load(FOLDER, 'model', source='local')`.", "",
              "## Intended use", "", card["intended_use"], "", "## Limits", ""]
    lines += [f"- {x}" for x in card["limits"]]
    return "\n".join(lines) + "\n"


def write_card(card: dict, folder: Path) -> None:
    from dermsynth import files
    files.write_text(folder / "model_card.md", card_markdown(card))
    files.write_text(folder / "model_card.json", json.dumps(card, indent=2, default=str))
