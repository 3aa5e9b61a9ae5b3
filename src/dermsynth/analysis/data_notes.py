"""What the report must say about the data a study ran on, from its run records and stages:
images a data set lists but that are not on disk (a partial download), and the cleaning stage.

Kept apart from the report's layout so any report (HTML, a notebook) says the same.
"""

from __future__ import annotations

from pathlib import Path

from dermsynth.analysis.report_sections import Section
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
