"""What the report must say about the data a study ran on, from its run records and stages:
images a data set lists but that are not on disk (a partial download), the cleaning stage, and
where the synthetic images came from.

Kept apart from the report's layout so any report (HTML, a notebook) says the same.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dermsynth import files
from dermsynth.analysis.report_sections import Section, fmt_table
from dermsynth.data.leakage import PROVENANCE_FILE
from dermsynth.experiments.cleaning_stage import cleaning_records


def missing_image_warnings(records: list[dict]) -> list[str]:
    """One warning naming each class that ran with images missing on disk, and how many."""
    missing: dict[str, int] = {}
    for rec in records:
        for cls, n in (rec.get("missing_images") or {}).items():
            missing[cls] = max(missing.get(cls, 0), int(n))
    if not missing:
        return []
    listed = ", ".join(f"{c}: {n} missing" for c, n in sorted(missing.items()))
    return [f"The data set lists images that are not on disk ({listed}); these classes ran on the images present "
            "only, so they are smaller than the paper's. `dermsynth data info` counts them; `dermsynth data "
            "download` fetches the rest."]


def cleaning_sections(out_dir: str | Path) -> list[Section]:
    """A "Data cleaning" section per split the study's cleaning stage cleaned (none without it)."""
    parts = []
    for rec in cleaning_records(out_dir):
        s = rec.get("settings", {})
        how = f"perceptual hash (Hamming ≤ {s.get('max_distance')})" + (
            f" and {s['embedding']} embeddings (cosine ≤ {s.get('max_cosine')})" if s.get("embedding") else "")
        parts.append(Section("Data cleaning", "", (
            f"Cleaning stage, before any split: {rec.get('n_images')} images of {rec.get('dataset')} compared by file "
            f"content, {how}: {rec.get('exact_pairs', 0)} exact and {rec.get('near_pairs', 0)} near-duplicate pairs "
            f"({rec.get('cross_class_pairs', 0)} across classes) in {rec.get('clusters', 0)} clusters. Each cluster "
            "is one split group, so no copy of a test or validation image is trained on; "
            f"{rec.get('images_in_shared_groups', 0)} images share a group (clusters and patients).")))
    return parts


def provenance_sections(out_dir: str | Path) -> list[Section]:
    """"Synthetic data provenance": per store, where its images came from, whether its generator's
    training set is known, and how many images the split excluded — from the leakage audit's
    accounts. A study whose audit did not run says so: no report calls unaudited data clean."""
    path = Path(out_dir) / "analysis" / PROVENANCE_FILE
    if not path.exists():
        return []
    accounts = files.read_json(path)
    table = pd.DataFrame([{"store": a["store"], "source": a["source"], "images": a["images"],
                           "excluded (reference held out)": a["excluded_held_out_reference"],
                           "generator training set": a["training_set"]} for a in accounts])
    unknown = [a for a in accounts if not a["training_set_known"]]
    note = ("Leakage audit (the study's audit stage): no synthetic image of a validation or test reference is drawn "
            "for training, and no recorded generator training image is held out.")
    if unknown:
        note += (" For " + ", ".join(a["store"] for a in unknown) + " the generator's training set is UNKNOWN, so no "
                 "audit can show that no held-out image was among it: the accuracies may be optimistic. The "
                 "conservative split (held_out_avoids_store in [base]) holds out only real images none of the "
                 "store's images was made from.")
    return [Section("Synthetic data provenance", fmt_table(table), note)]
