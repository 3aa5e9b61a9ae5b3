"""``serve``: uvicorn on loopback by default, with the guarded protocol (header and body
deadlines) and the body guard of :mod:`dermsynth.reader_study.server`, a limit on concurrent
connections (503 beyond it) and a short keep-alive."""

from __future__ import annotations

from pathlib import Path

from dermsynth.reader_study.app import create_app
from dermsynth.reader_study.server import guarded_protocol


def serve(study: str | Path, host: str = "127.0.0.1", port: int = 8000, *, header_timeout: float = 10.0,
          body_timeout: float = 10.0, max_connections: int = 64, log_level: str = "warning") -> None:
    """Serve ``study`` with uvicorn (blocking) on ``host`` (loopback unless told otherwise)."""
    import uvicorn

    config = uvicorn.Config(create_app(study), host=host, port=port, log_level=log_level,
                            http=guarded_protocol(header_timeout, body_timeout), ws="none", lifespan="off",
                            limit_concurrency=max_connections, timeout_keep_alive=5, server_header=False,
                            date_header=False)
    uvicorn.Server(config).run()
