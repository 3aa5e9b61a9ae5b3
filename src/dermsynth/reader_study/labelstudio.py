"""Label Studio interop, for labs that already run it: export the study's items as tasks (with
a labelling config), and import Label Studio's JSON export of annotations as answers.

Tasks carry only the opaque item id and image — never the key. The export copies ``items/``
alone next to the tasks (random names, written in name order, one fixed mtime), so Label
Studio's local-files root is the export folder and never the study folder, which holds the key
(``study.sqlite``). Imported annotators become readers named ``ls:<annotator>``; a repeated
import adds nothing twice.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from dermsynth import files
from dermsynth.errors import DataError
from dermsynth.reader_study import database as db
from dermsynth.reader_study.design import FIXED_MTIME

LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Image name="image_b" value="$image_b"/>
  <Choices name="authenticity" toName="image" choice="single" required="true">
    <Choice value="Real"/><Choice value="Synthetic"/><Choice value="Left"/><Choice value="Right"/>
  </Choices>
  <Rating name="confidence" toName="image" maxRating="5" required="true"/>
</View>
"""


def export_tasks(study: str | Path, out: str | Path, url_prefix: str = "/data/local-files/?d=items/") -> Path:
    """``tasks.json`` (one task per item), ``label_config.xml`` and ``items/`` (the images alone) in
    ``out``; serve ``out`` to Label Studio (LOCAL_FILES_DOCUMENT_ROOT), not the study folder."""
    study, out = Path(study), Path(out)
    if out.resolve() == study.resolve() or study.resolve() in out.resolve().parents:
        raise DataError(f"--out {out} is inside the study folder {study}, which holds the key; export elsewhere")
    conn = db.connect(study / db.DB_NAME)
    try:
        items = [dict(r) for r in conn.execute("SELECT item_id, task, image_a, image_b FROM items ORDER BY item_id")]
    finally:
        conn.close()
    tasks = [{"data": {"item_id": it["item_id"], "task": "pair" if it["task"] == "pair" else "single",
                       "image": f"{url_prefix}{it['image_a']}.jpg",
                       "image_b": f"{url_prefix}{it['image_b']}.jpg" if it["image_b"] else ""}} for it in items]
    images = sorted({it["image_a"] for it in items} | {it["image_b"] for it in items if it["image_b"]})
    (out / "items").mkdir(parents=True, exist_ok=True)
    for image_id in images:  # random names in name order: the order carries nothing
        dest = out / "items" / f"{image_id}.jpg"
        shutil.copyfile(study / "items" / f"{image_id}.jpg", dest)
        os.utime(dest, (FIXED_MTIME, FIXED_MTIME))
    files.write_text(out / "tasks.json", json.dumps(tasks, indent=1))
    files.write_text(out / "label_config.xml", LABEL_CONFIG)
    return out / "tasks.json"


def _annotator(annotation: dict) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return f"ls:{who}"


def _answer(results: list[dict]) -> tuple[str | None, int | None]:
    answer = confidence = None
    for r in results:
        value = r.get("value", {})
        if r.get("from_name") == "authenticity" and value.get("choices"):
            answer = str(value["choices"][0]).lower()
        elif r.get("from_name") == "confidence" and "rating" in value:
            confidence = int(value["rating"])
    return answer, confidence


def import_annotations(study: str | Path, export_json: str | Path) -> dict:
    """Add the answers of a Label Studio JSON export; returns counts (added, repeated, skipped)."""
    try:
        tasks = json.loads(Path(export_json).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the Label Studio export {export_json}: {exc}") from None
    conn = db.connect(Path(study) / db.DB_NAME)
    added = repeated = skipped = 0
    try:
        for task in tasks:
            item = db.item(conn, str(task.get("data", {}).get("item_id", "")))
            for ann in task.get("annotations", []):
                answer, confidence = _answer(ann.get("result", []))
                if item is None or answer not in db.ANSWERS[item["task"]] or not confidence or not 1 <= confidence <= 5:
                    skipped += 1
                    continue
                name = _annotator(ann)
                reader = conn.execute("SELECT reader_id FROM readers WHERE name = ?", (name,)).fetchone()
                if reader is None:
                    db.add_reader(conn, name)
                    reader = conn.execute("SELECT reader_id FROM readers WHERE name = ?", (name,)).fetchone()
                if db.record_answer(conn, reader["reader_id"], item["item_id"], answer, confidence, None):
                    added += 1
                else:
                    repeated += 1
    finally:
        conn.close()
    return {"added": added, "repeated": repeated, "skipped": skipped}
