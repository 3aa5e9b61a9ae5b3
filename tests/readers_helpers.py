"""The reader-study tests' server: uvicorn in a subprocess on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``uvicorn`` serving a study in a child process; ``restart()`` kills it with SIGKILL."""

    def __init__(self, study: Path):
        self.study, self.port, self.proc = study, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        code = (f"import uvicorn; from dermsynth.readers.app import create_app; "
                f"uvicorn.run(create_app({str(self.study)!r}), host='127.0.0.1', port={self.port}, log_level='error')")
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
