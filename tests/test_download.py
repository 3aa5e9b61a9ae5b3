"""The downloader against a loopback HTTP server: good, wrong md5, 404, stalled."""

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from dermsynth.data.download import download_images

GOOD = b"\xff\xd8good-jpeg-bytes"
WRONG = b"\xff\xd8changed-bytes"


class Handler(BaseHTTPRequestHandler):
    hits: dict = {}

    def do_GET(self):  # noqa: N802
        Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        if self.path == "/good.jpg":
            body = GOOD
        elif self.path == "/wrong.jpg":
            body = WRONG
        elif self.path == "/stall.jpg":
            time.sleep(1.5)
            body = GOOD
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_download_verifies_retries_and_resumes(server, tmp_path):
    md5 = hashlib.md5(GOOD).hexdigest()
    meta = pd.DataFrame({
        "md5hash": [md5, "0" * 32, "1" * 32, "2" * 32],
        "url": [f"{server}/good.jpg", f"{server}/wrong.jpg", f"{server}/missing.jpg", f"{server}/stall.jpg"],
    })
    Handler.hits.clear()
    res = download_images(meta, tmp_path, workers=4, retries=2, timeout=0.5, backoff=0.01)
    status = dict(zip(res["md5hash"], res["status"], strict=True))
    detail = dict(zip(res["md5hash"], res["detail"], strict=True))
    assert status[md5] == "ok" and (tmp_path / "images" / f"{md5}.jpg").read_bytes() == GOOD
    assert status["0" * 32] == "failed" and "md5" in detail["0" * 32]
    assert status["1" * 32] == "failed" and "404" in detail["1" * 32]
    assert status["2" * 32] == "failed" and "timed out" in detail["2" * 32].lower()
    assert Handler.hits["/missing.jpg"] == 1  # a 404 is not retried
    assert Handler.hits["/wrong.jpg"] == 2  # a bad md5 is
    assert not list((tmp_path / "images").glob("*.part"))
    assert not (tmp_path / "images" / f"{'0' * 32}.jpg").exists()
    # resume: the verified file is skipped, not fetched again
    res2 = download_images(meta.iloc[:1], tmp_path)
    assert res2["status"].tolist() == ["skipped"] and Handler.hits["/good.jpg"] == 1
