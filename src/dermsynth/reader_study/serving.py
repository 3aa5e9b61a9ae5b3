"""``serve``: uvicorn on loopback by default, with the guarded protocol (header and body
deadlines) and the body guard of :mod:`dermsynth.reader_study.server`, a limit on concurrent
connections (503 beyond it) and a short keep-alive."""

from __future__ import annotations

from pathlib import Path

from dermsynth.reader_study.app import create_app
from dermsynth.reader_study.server import guarded_protocol

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def serve(study: str | Path, host: str = "127.0.0.1", port: int = 8000, *, header_timeout: float = 10.0,
          body_timeout: float = 10.0, max_connections: int = 64, log_level: str = "warning",
          trusted_proxies: tuple[str, ...] = ()) -> None:
    """Serve ``study`` with uvicorn (blocking) on ``host`` (loopback unless told otherwise).
    ``X-Forwarded-Proto``/``-For`` are believed only from ``trusted_proxies``: from anyone else a
    client could claim HTTPS and get the admin cookie marked Secure over plain HTTP."""
    import uvicorn

    config = uvicorn.Config(create_app(study), host=host, port=port, log_level=log_level,
                            proxy_headers=bool(trusted_proxies), forwarded_allow_ips=",".join(trusted_proxies) or "",
                            http=guarded_protocol(header_timeout, body_timeout), ws="none", lifespan="off",
                            limit_concurrency=max_connections, timeout_keep_alive=5, server_header=False,
                            date_header=False)
    uvicorn.Server(config).run()
