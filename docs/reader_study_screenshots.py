"""Screenshots of the reader study for the README, taken in Debian's Chromium with Playwright:
the reader page (phone and desktop) and the study's analysis page, from a study made on the
quickstart's store with simulated answers.

    python docs/reader_study_screenshots.py QUICKSTART_OUT [--out docs]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("quickstart_out", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from dermsynth.analysis.reader_study import write_study_report
    from dermsynth.data.splits import load_split
    from dermsynth.experiments.results import load_records
    from dermsynth.reader_study import database as db
    from dermsynth.reader_study.design import StudyConfig, create_study
    from dermsynth.train.spec import RunSpec

    rec = next(r for r in load_records(args.quickstart_out) if r["spec"].get("synthetic_store"))
    spec = RunSpec(**rec["spec"])
    study = Path(tempfile.mkdtemp(prefix="reader-study-")) / "study"
    create_study(spec.synthetic_store, load_split(spec.split_spec()), study,
                 StudyConfig(n_items=40, n_pairs=6, attention_checks=2, image_size=256, seed=0,
                             allow_mixed_resolution=True))
    conn = db.connect(study / db.DB_NAME)
    rng = np.random.default_rng(0)
    items = [dict(r) for r in conn.execute("SELECT * FROM items")]
    flip = {"real": "synthetic", "synthetic": "real", "left": "right", "right": "left"}
    for i, skill in enumerate([0.9, 0.8, 0.75, 0.7, 0.6]):  # simulated readers, for the analysis page only
        db.add_reader(conn, f"simulated reader {i + 1}")
        rid = conn.execute("SELECT reader_id FROM readers WHERE name = ?", (f"simulated reader {i + 1}",)).fetchone()[0]
        for it in items:
            right = rng.random() < skill
            db.record_answer(conn, rid, it["item_id"], it["truth"] if right else flip[it["truth"]],
                             int(rng.integers(3, 6) if right else rng.integers(1, 4)), None)
    token = db.add_reader(conn, "dr demo")
    conn.close()
    report = write_study_report(study)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (f"import uvicorn; from dermsynth.reader_study.app import create_app; "
            f"uvicorn.run(create_app({str(study)!r}), host='127.0.0.1', port={port}, log_level='error')")
    server = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 900, "height": 760})
            page.goto(f"http://127.0.0.1:{port}/r/{token}")
            page.wait_for_selector("#confidence button")
            page.keyboard.press("s" if "real or synthetic" in page.inner_text("#question") else "ArrowLeft")
            page.screenshot(path=str(args.out / "reader_study_page.png"))
            phone = browser.new_page(viewport={"width": 390, "height": 780})
            phone.goto(f"http://127.0.0.1:{port}/r/{token}")
            phone.wait_for_selector("#confidence button")
            phone.screenshot(path=str(args.out / "reader_study_phone.png"))
            analysis = browser.new_page(viewport={"width": 1000, "height": 1100})
            analysis.goto(report.resolve().as_uri())
            analysis.screenshot(path=str(args.out / "reader_study_analysis.png"))
            browser.close()
    finally:
        server.kill()
    print(f"screenshots in {args.out}; study in {study}")


if __name__ == "__main__":
    main()
