"""Stanford DDI: 656 biopsy-confirmed images, benign vs malignant, skin tone 12/34/56.

DDI is available only after registration, so it is always a local folder holding
``ddi_metadata.csv`` and the image files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dermsynth.data.table import make_table
from dermsynth.errors import DermsynthError

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
    image_dir = root / "images" if (root / "images").is_dir() else root
    malignant = meta["malignant"].astype(str).str.lower().isin(["true", "1", "yes"])
    table = pd.DataFrame({
        "id": "ddi-" + meta["DDI_ID"].astype(str),
        "path": [str(image_dir / f) for f in meta["DDI_file"]],
        "label": malignant.map({True: "malignant", False: "benign"}),
        "skin_type": meta["skin_tone"].map(TONE_TO_TYPE),
        "skin_group": meta["skin_tone"].map(TONE_TO_GROUP),
        "disease": meta["disease"].astype(str),
    })
    if "patient" in meta.columns:
        table["patient"] = meta["patient"].astype(str)
    return make_table(table, "ddi")
