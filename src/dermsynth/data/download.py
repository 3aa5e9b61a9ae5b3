"""Fetch Fitzpatrick 17k images from the CSV's ``url`` column.

Many public URLs are dead or slow, so a download must be a job that can be re-run:
verified files are skipped (resume), each file is written atomically, transient failures
are retried with exponential back-off, a stalled server times out, and the final table
says what failed and why instead of crashing on the first 404.

Without a network every URL fails the same way, slowly (retries, back-off and timeouts add up
to a long wait over the whole CSV). So the download stops after ``MAX_CONNECTION_FAILURES``
connection failures in a row with no success between them, and says so; what is left is not tried.
"""

from __future__ import annotations

import hashlib
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dermsynth import __version__
from dermsynth.files import write_bytes
from dermsynth.progress import progress_bar

USER_AGENT = f"dermsynth/{__version__} (research)"


@dataclass
class DownloadResult:
    md5hash: str
    status: str  # ok | skipped | failed
    detail: str = ""
    attempts: int = 0
    connection: bool = False  # failed to reach the server at all (DNS, refused, timeout)


MAX_CONNECTION_FAILURES = 20
NOT_TRIED = "not tried: the download stopped after {n} connection failures in a row"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _verified(path: Path, md5: str) -> bool:
    return path.exists() and _md5(path.read_bytes()) == md5


def fetch_one(url: str, md5: str, dest: Path, retries: int = 3, timeout: float = 10.0,
              backoff: float = 0.5, verify: bool = True) -> DownloadResult:
    """Download one image to ``dest`` (atomically), retrying transient errors."""
    if _verified(dest, md5) or (not verify and dest.exists()):
        return DownloadResult(md5, "skipped", "already present and verified")
    detail, connection = "", False
    for attempt in range(1, retries + 1):
        try:
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                data = resp.read()
            if verify and _md5(data) != md5:
                detail, connection = f"md5 mismatch (got {_md5(data)})", False
            else:
                write_bytes(dest, data)
                return DownloadResult(md5, "ok", "", attempt)
        except urllib.error.HTTPError as exc:
            detail, connection = f"HTTP {exc.code}", False
            if exc.code in (400, 401, 403, 404, 410):
                return DownloadResult(md5, "failed", detail, attempt)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            detail = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            connection = True
        if attempt < retries:
            time.sleep(backoff * 2 ** (attempt - 1))
    return DownloadResult(md5, "failed", detail, retries, connection=connection)


def download_images(meta: pd.DataFrame, root: str | Path, workers: int = 8, retries: int = 3,
                    timeout: float = 10.0, backoff: float = 0.5, verify: bool = True,
                    max_connection_failures: int = MAX_CONNECTION_FAILURES) -> pd.DataFrame:
    """Download every row of ``meta`` (columns md5hash, url) to ``root/images``.

    Returns one row per image: md5hash, status, detail, attempts, connection. Re-running resumes.
    ``attrs["stopped"]`` is True when it stopped after ``max_connection_failures`` in a row.
    """
    image_dir = Path(root) / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = [(str(u), str(h)) for u, h in zip(meta["url"], meta["md5hash"], strict=True)]

    in_a_row, lock, stop = [0], threading.Lock(), threading.Event()

    def job(row):
        url, md5 = row
        if not url or url == "nan":
            return DownloadResult(md5, "failed", "no url")
        if stop.is_set():
            return DownloadResult(md5, "failed", NOT_TRIED.format(n=max_connection_failures))
        res = fetch_one(url, md5, image_dir / f"{md5}.jpg", retries, timeout, backoff, verify)
        with lock:
            in_a_row[0] = in_a_row[0] + 1 if res.connection else 0 if res.status == "ok" else in_a_row[0]
            if in_a_row[0] >= max_connection_failures:
                stop.set()
        return res

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(progress_bar(pool.map(job, rows), total=len(rows), desc="download"))
    table = pd.DataFrame([r.__dict__ for r in results])
    table.attrs["stopped"] = stop.is_set()
    return table
