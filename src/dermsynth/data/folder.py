"""Any other data set: an image folder with one sub-folder per class, or a CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dermsynth.data.table import make_table
from dermsynth.errors import DermsynthError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


def load_folder(root: str | Path, csv: str | Path | None = None) -> pd.DataFrame:
    """Load ``root/<class>/<image>`` or, with ``csv``, rows of ``path,label[,skin_type][,patient]``.

    CSV paths are relative to the CSV's folder unless absolute.
    """
    if csv is not None:
        csv = Path(csv)
        if not csv.exists():
            raise DermsynthError(f"{csv} not found")
        df = pd.read_csv(csv)
        for col in ("path", "label"):
            if col not in df.columns:
                raise DermsynthError(f"{csv} lacks the column {col!r}; expected path,label[,skin_type]")
        paths = [p if Path(p).is_absolute() else str(csv.parent / p) for p in df["path"].astype(str)]
        df = df.assign(path=paths)
        if "id" not in df.columns:
            df["id"] = [Path(p).stem for p in paths]
            if df["id"].duplicated().any():
                df["id"] = [f"{i:06d}-{Path(p).stem}" for i, p in enumerate(paths)]
        return make_table(df, "folder")
    root = Path(root)
    if not root.is_dir():
        raise DermsynthError(f"{root} is not a folder; expected one sub-folder per class")
    rows = []
    for cdir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(cdir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                rows.append({"id": f"{cdir.name}/{f.stem}", "path": str(f), "label": cdir.name})
    if not rows:
        raise DermsynthError(f"no images found under {root}; expected {root}/<class>/<image>.jpg")
    return make_table(pd.DataFrame(rows), "folder")
