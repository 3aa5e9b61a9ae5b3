"""Stanford DDI: 656 biopsy-confirmed images, benign vs malignant, skin tone 12/34/56.

DDI is available only after registration, so it is always a local folder holding
``ddi_metadata.csv`` and the image files.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pandas as pd

from dermsynth.data.table import make_table
from dermsynth.errors import DataError, DermsynthError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
# Where DDI's own archive puts the images, relative to the folder holding ddi_metadata.csv.
IMAGE_FOLDERS = (".", "images", "ddidiversedermatologyimages")

DDI_CSV = "ddi_metadata.csv"
TONE_TO_GROUP = {12: "I-II", 34: "III-IV", 56: "V-VI"}
TONE_TO_TYPE = {12: 1, 34: 3, 56: 5}  # representative type; the group is what DDI records


def load_ddi(root: str | Path) -> pd.DataFrame:
    root = Path(root)
    csv = root / DDI_CSV
    if not csv.exists():
        raise DermsynthError(f"{csv} not found: DDI is distributed after registration; put "
                             f"{DDI_CSV} and the images in {root}")
    meta = pd.read_csv(csv)
    need = ["DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"]
    missing = [c for c in need if c not in meta.columns]
    if missing:
        raise DermsynthError(f"{csv} lacks the columns {missing}; expected {need}")
    bad_tone = sorted(set(meta["skin_tone"]) - set(TONE_TO_GROUP))
    if bad_tone:
        raise DermsynthError(f"{csv}: skin_tone values {bad_tone} are not in {{12, 34, 56}}")
    image_dir = find_image_dir(root, list(meta["DDI_file"].astype(str)))
    on_disk = {p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    listed = set(meta["DDI_file"].astype(str))
    missing = sorted(listed - on_disk)
    if missing:
        raise DataError(f"{len(missing)} of {len(listed)} DDI images listed in {csv} are not in {image_dir} "
                        f"(e.g. {missing[0]}); put the archive's images there")
    extra = sorted(on_disk - listed)
    if extra:
        log.warning("%d image files in %s are not in %s (e.g. %s); they are ignored", len(extra), image_dir,
                    DDI_CSV, extra[0])
    if "patient" not in meta.columns:
        _warn_no_patient(str(csv))
    malignant = meta["malignant"].astype(str).str.lower().isin(["true", "1", "yes"])
    table = pd.DataFrame({
        "id": "ddi-" + meta["DDI_ID"].astype(str),
        "path": [str(image_dir / f) for f in meta["DDI_file"]],
        "label": malignant.map({True: "malignant", False: "benign"}),
        "skin_type": meta["skin_tone"].map(TONE_TO_TYPE),
        "skin_group": meta["skin_tone"].map(TONE_TO_GROUP),
        "disease": meta["disease"].astype(str),
        # the generator's prompt names the disease ("An image of melanoma, …"), not "malignant"
        "prompt_label": meta["disease"].astype(str).str.replace("-", " "),
    })
    if "patient" in meta.columns:
        table["patient"] = meta["patient"].astype(str)
    return make_table(table, "ddi")


def find_image_dir(root: Path, files: list[str]) -> Path:
    """The folder (root, root/images, the archive's own sub-folder or another sub-folder) that
    holds the most of the listed files."""
    probe = files[:50]
    candidates = [root / sub for sub in IMAGE_FOLDERS] + sorted(p for p in root.iterdir() if p.is_dir())
    found = {c: sum((c / f).exists() for f in probe) for c in candidates if c.is_dir()}
    best = max(found, key=found.get, default=None)
    if best is None or found[best] == 0:
        raise DataError(f"DDI images (e.g. {probe[0] if probe else '?'}) not found in {root} or its sub-folders "
                        f"({', '.join(IMAGE_FOLDERS[1:])}, …); unpack the DDI archive there")
    return best


@functools.cache
def _warn_no_patient(csv: str) -> None:
    """Once per process and file, not once per load (a study loads DDI for every run)."""
    log.warning("DDI has no patient column (656 images of 570 patients): each image is its own split group, "
                "so two photos of one patient can fall on both sides of a split; add a 'patient' column to "
                "%s if you have the mapping", csv)
