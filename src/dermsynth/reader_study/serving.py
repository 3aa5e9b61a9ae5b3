"""``serve``: uvicorn on loopback by default, with the guarded protocol (header and body
deadlines, connection caps per client and in all) and the body guard and rate limit of
:mod:`dermsynth.reader_study.server`, and a short keep-alive."""

from __future__ import annotations

from pathlib import Path

from dermsynth.reader_study.app import create_app
from dermsynth.reader_study.server import RateLimit, guarded_protocol

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def serve(study: str | Path, host: str = "127.0.0.1", port: int = 8000, *, header_timeout: float = 10.0,
          body_timeout: float = 10.0, max_connections: int = 64, max_connections_per_client: int = 16,
          requests_per_second: float = 50.0, request_burst: int = 200, log_level: str = "warning",
          trusted_proxies: tuple[str, ...] = (), admin_session_hours: float = 8.0) -> None:
    """Serve ``study`` with uvicorn (blocking) on ``host`` (loopback unless told otherwise).
    ``X-Forwarded-Proto``/``-For`` are believed only from ``trusted_proxies``: from anyone else a
    client could claim HTTPS and get the admin cookie marked Secure over plain HTTP. The caps:
    ``max_connections`` in all (the next one gets 503), ``max_connections_per_client`` from one
    address (429; a trusted proxy is exempt), ``requests_per_second`` per address on average with
    bursts of ``request_burst`` (429)."""
    import uvicorn

    app = RateLimit(create_app(study, admin_session_hours=admin_session_hours), requests_per_second, request_burst)
    protocol = guarded_protocol(header_timeout, body_timeout, max_connections, max_connections_per_client,
                                trusted_proxies)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            proxy_headers=bool(trusted_proxies), forwarded_allow_ips=",".join(trusted_proxies) or "",
                            http=protocol, ws="none", lifespan="off", limit_concurrency=None, timeout_keep_alive=5,
                            server_header=False, date_header=False)
    uvicorn.Server(config).run()
