"""CSV exports of a reader study that a spreadsheet cannot run: a cell that starts with = + - @
(or a tab or CR) is a formula to Excel and LibreOffice, so such text gets a leading apostrophe
(OWASP's advice against CSV injection). Diagnoses are class names already; reader names and
anything else typed by a person go through here too."""

from __future__ import annotations

import csv
import io

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ANSWER_FIELDS = ["reader", "item_id", "task", "truth", "answer", "confidence", "diagnosis", "label", "method",
                 "skin_group", "source_id", "ref_id", "image_a", "image_b", "answered_at"]


def safe_cell(value):
    """A spreadsheet shows a cell starting with = + - @ (or a tab or CR) as a formula: prefix it
    with an apostrophe so it stays text (OWASP's advice for CSV injection)."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def answers_csv(rows: list[dict]) -> str:
    """The admin's export: every answer with its key."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ANSWER_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: safe_cell(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def frame_csv(frame: pd.DataFrame) -> str:
    """A data frame as CSV with its text cells neutralised."""
    return frame.apply(lambda col: col if pd.api.types.is_numeric_dtype(col) else col.map(safe_cell))\
        .to_csv(index=False)
