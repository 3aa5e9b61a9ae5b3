"""What the report must say about the data a study ran on, from its run records and stages:
images a data set lists but that are not on disk (a partial download), and the cleaning stage.

Kept apart from the report's layout so any report (HTML, a notebook) says the same.
"""

from __future__ import annotations


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
