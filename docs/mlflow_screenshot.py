"""Screenshots of ``mlflow ui`` on a study's tracking store for the README, taken in Debian's
Chromium with Playwright: the experiment's runs (parent study run with its cells and seeds)
and one run's metrics.

    python docs/mlflow_screenshot.py runs/quickstart [--experiment quickstart] [--out docs]

The store is ``STUDY/mlflow.db`` as ``dermsynth quickstart --track local`` writes it.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--experiment", default="quickstart")
    ap.add_argument("--dest", type=Path, default=Path("docs"))
    args = ap.parse_args()
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    uri = f"sqlite:///{(args.out / 'mlflow.db').resolve()}"
    exp = MlflowClient(uri).get_experiment_by_name(args.experiment)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host",
                               "127.0.0.1", "--port", str(port), "--workers", "1"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs", wait_until="load", timeout=120_000)
            page.wait_for_timeout(10_000)  # the UI keeps polling: no network idle
            for close in page.locator('[aria-label="Close"]').all():  # the assistant side panel
                if close.is_visible():
                    close.click()
            page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()  # show the cells' runs
            page.wait_for_timeout(3_000)
            page.screenshot(path=str(args.dest / "mlflow_runs.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.dest / 'mlflow_runs.png'}")


if __name__ == "__main__":
    main()
