"""The reader-study tests' server: `serve()` (hardened uvicorn) in a subprocess on a free loopback
port; and the tells a reader could use without judging the image."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd

from dermsynth.reader_study import database as db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``uvicorn`` serving a study in a child process; ``restart()`` kills it with SIGKILL."""

    def __init__(self, study: Path, **options):
        self.study, self.port, self.proc, self.options = study, free_port(), None, options
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        """The study served as `dermsynth reader-study serve` serves it (``options``: serve()'s)."""
        code = (f"from dermsynth.reader_study.serving import serve; "
                f"serve({str(self.study)!r}, '127.0.0.1', {self.port}, "
                f"log_level='error', **{self.options!r})")
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                httpx.get(self.url + "/", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the study server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def shown_everything(study: Path, token: str) -> None:
    """Record every item as served to this reader, as a reader who went through the whole study has
    been: the server gives a token only the images of items it was shown."""
    conn = db.connect(study / db.DB_NAME)
    reader = db.reader_for(conn, token)
    conn.execute("INSERT OR IGNORE INTO served (reader_id, item_id, served_at) SELECT ?, item_id, 'test' FROM items",
                 (reader["reader_id"],))
    conn.close()


def tells(study: Path, server: Server, token: str):
    """For every single-image item, (is synthetic, Content-Length as served, sharpness: variance
    of the Laplacian of the served image in grey levels), fetched from the running server."""
    import io
    import sqlite3

    import numpy as np
    from PIL import Image
    from scipy import ndimage

    shown_everything(study, token)
    conn = sqlite3.connect(study / "study.sqlite")
    items = conn.execute("SELECT truth, image_a FROM items WHERE task = 'single'").fetchall()
    conn.close()
    rows = []
    for truth, image in items:
        r = httpx.get(f"{server.url}/img/{token}/{image}", timeout=10)
        grey = np.asarray(Image.open(io.BytesIO(r.content)).convert("L"), dtype=float)
        rows.append((truth == "synthetic", int(r.headers["content-length"]), float(ndimage.laplace(grey).var())))
    return rows


def items(study: Path) -> pd.DataFrame:
    """The study's items table (with the key) as a frame."""
    conn = db.connect(study / db.DB_NAME)
    try:
        return pd.DataFrame([dict(r) for r in conn.execute("SELECT * FROM items")])
    finally:
        conn.close()


def invite(study: Path, name: str) -> str:
    """A reader's invite token, added straight to the study's database."""
    conn = db.connect(study / db.DB_NAME)
    try:
        return db.add_reader(conn, name)
    finally:
        conn.close()
