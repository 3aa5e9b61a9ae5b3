"""Shared pieces of the reader-study tests: a small study from a real (tiny) synthetic store,
and a uvicorn server in a subprocess on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def make_store_and_split(root: Path, demo_table):
    from dermsynth.data.cache import cache_images
    from dermsynth.data.splits import make_split
    from dermsynth.generate.backends.builtin import BuiltinBackend
    from dermsynth.generate.builtin_train import BuiltinConfig, train_builtin
    from dermsynth.generate.runner import run_generation

    split = make_split(demo_table, 5, 4)
    cached = cache_images(split.pool, 16, root / "cache", progress=False)
    labels = list(split.pool.set_index("id").loc[cached.ids, "label"])
    train_builtin(cached.array, labels, root / "gen", classes=sorted(demo_table["label"].unique()), max_steps=3,
                  config=BuiltinConfig(size=16, block_out_channels=(16, 32), batch_size=8), progress=False)
    refs = split.pool.groupby("label").head(3)
    for method in ("text-to-image", "inpaint"):
        run_generation(BuiltinBackend(root / "gen" / "model", steps=2), refs, method, 1, root / "store",
                       split=split, progress=False)
    return root / "store", split


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
