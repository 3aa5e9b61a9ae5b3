"""Serving a reader study so that it holds under abuse: what the ASGI app cannot see.

* :class:`GuardedH11` — uvicorn's h11 protocol with deadlines: a request's headers must arrive
  within ``header_timeout`` seconds of the connection (or of the previous response) and its
  body within ``body_timeout`` of the headers; else 408 and the connection is closed. (uvicorn
  has a keep-alive timeout but none for a half-sent request, so one slow client could hold a
  connection for ever), and a response's deadline: a client that stops reading (a slow or
  pipelining reader) has ``body_timeout`` seconds to drain the send buffer. It also caps
  connections per client address as well as in all (refused ones not counted): uvicorn's
  own cap is server-wide only, so one client holding idle connections kept every reader out. A
  trusted proxy's address is exempt from the per-client cap (every reader arrives from it; the
  proxy limits per address itself).
* :class:`RateLimit` — ASGI middleware: a token bucket of requests per client address (429 past
  it), so that one client cannot take the server's time from the others.
* :class:`BodyGuard` — ASGI middleware: for a POST to a reader's endpoint the invite token is
  checked *before* any of the body is read (a wrong token is 403 whatever the body); then the
  body is counted as it arrives, however it is framed (Content-Length or chunked), and 413 is
  answered as soon as it passes ``max_body``. Every response gets the no-store headers.
:func:`dermsynth.reader_study.serving.serve` runs the app with both (kept apart so that the app,
which uses the guard, and the server, which runs the app, do not import each other).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import time
from collections.abc import Awaitable, Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# On every response, errors included: nothing cached, nothing sniffed or referred, and no page framed by
# another site (the pages' own inline script and style are the only ones allowed).
NO_STORE = {"Cache-Control": "no-store, private", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                       "img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
                                       "frame-ancestors 'none'",
            "X-Frame-Options": "DENY"}
MAX_BODY = 4096
SEND_BUFFER = 128 * 1024  # bytes the kernel holds for one connection: an image or two, not megabytes
READER_POST = re.compile(r"^/api/r/([^/]+)/")


class GuardedH11(H11Protocol):
    """h11 with a header deadline and a body deadline (see the module's docstring)."""

    header_timeout = 10.0
    body_timeout = 10.0
    max_connections = 64
    max_per_client = 16
    shared_clients: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._deadline, self._stall, self._started, self._refused = None, None, False, False
        super().connection_made(transport)
        host = self.client[0] if self.client else ""
        admitted = [p for p in self.connections if not getattr(p, "_refused", False)]  # refused ones, closing, not
        if not is_shared(host, self.shared_clients) and \
                sum(1 for p in admitted if p.client and p.client[0] == host) > self.max_per_client:
            return self._refuse(b"429 Too Many Requests")
        if len(admitted) > self.max_connections:
            return self._refuse(b"503 Service Unavailable")
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a bounded kernel send buffer: a client that stops reading is noticed soon
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self._arm(self.header_timeout)

    def _refuse(self, status: bytes) -> None:
        self._refused = True
        self.transport.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n"
                             b"retry-after: 5\r\ncache-control: no-store, private\r\n\r\n")
        self.transport.close()

    def pause_writing(self) -> None:
        """The client is not reading what it asked for (a slow or pipelining reader): it has
        ``body_timeout`` seconds to drain the send buffer, else the connection is dropped."""
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self.body_timeout, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _arm(self, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():  # a refused connection: nothing it sends is read
            return
        before = self.conn.their_state
        self._started = True
        super().data_received(data)
        if before is h11.IDLE and self.conn.their_state is h11.SEND_BODY:
            self._arm(self.body_timeout)  # headers complete: now the body has its own deadline

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._started = False
        if not self.transport.is_closing():
            self._arm(self.header_timeout)

    def _expired(self) -> None:
        """The client has not finished sending its request in time: 408 (unless a response is
        under way, or the connection is an idle keep-alive one) and close."""
        if self.transport.is_closing() or self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            return
        idle = self.conn.their_state is h11.IDLE and not self._started and self.cycle is not None
        if not idle and (self.cycle is None or self.cycle.response_complete or not self.cycle.response_started):
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n"
                                 b"cache-control: no-store, private\r\n\r\n")
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._deadline, self._stall):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)


def proxy_networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``--trusted-proxy`` values as networks (an address or a range such as 10.0.0.0/8); "*" is
    refused: trusting every client's X-Forwarded-For would let any client pick its own address."""
    nets = []
    for proxy in proxies:
        try:
            nets.append(ipaddress.ip_network(proxy, strict=False))
        except ValueError:
            raise ValueError(f"--trusted-proxy {proxy!r} is not an address or a network (e.g. 127.0.0.1 or "
                             "10.0.0.0/8); name the proxy itself, never every client") from None
    return tuple(nets)


def is_shared(host: str, networks) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in networks)


def guarded_protocol(header_timeout: float, body_timeout: float, max_connections: int = 64,
                     max_per_client: int = 16, shared_clients: tuple[str, ...] = ()) -> type[GuardedH11]:
    """The protocol class for one server: its deadlines, its connection caps (at most
    ``max_connections`` in all and ``max_per_client`` from one address, except the addresses
    of ``shared_clients``, the trusted proxies)."""
    return type("GuardedH11", (GuardedH11,), {"header_timeout": header_timeout, "body_timeout": body_timeout,
                                              "max_connections": max_connections, "max_per_client": max_per_client,
                                              "shared_clients": proxy_networks(shared_clients)})


Send = Callable[[dict], Awaitable[None]]


async def _json(send: Send, status: int, body: dict, retry_after: int | None = None) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
               (b"connection", b"close")] + [(k.lower().encode(), v.encode()) for k, v in NO_STORE.items()]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class RateLimit:
    """ASGI middleware: at most ``burst`` requests at once and ``per_second`` on average from one
    client address (429 with Retry-After beyond). Behind a ``--trusted-proxy`` the address is the
    one the proxy forwards, since uvicorn's proxy-headers middleware runs first."""

    def __init__(self, app, per_second: float = 50.0, burst: int = 200):
        if per_second <= 0 or burst < 1:
            raise ValueError(f"a request rate of {per_second}/s in bursts of {burst} admits nothing; give a rate "
                             "above 0 and a burst of at least 1")
        self.app, self.per_second, self.burst = app, per_second, burst
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when)

    def allow(self, host: str, now: float) -> bool:
        tokens, when = self.buckets.get(host, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.per_second)
        if len(self.buckets) > 10_000:  # many addresses: forget those whose bucket has refilled
            self.buckets = {h: b for h, b in self.buckets.items()
                            if b[0] + (now - b[1]) * self.per_second < self.burst}
        self.buckets[host] = (tokens - 1.0 if tokens >= 1.0 else tokens, now)
        return tokens >= 1.0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not self.allow((scope.get("client") or ("",))[0], time.monotonic()):
            return await _json(send, 429, {"error": "too many requests from your address; wait a few seconds"},
                               retry_after=max(1, round(1 / self.per_second)))
        return await self.app(scope, receive, send)


class BodyGuard:
    """ASGI middleware: token before body, body counted as it arrives, no-store on every response."""

    def __init__(self, app, token_ok: Callable[[str], bool], max_body: int = MAX_BODY):
        self.app, self.token_ok, self.max_body = app, token_ok, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_no_store(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in NO_STORE.items()
                         if k.lower().encode() not in have]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send_no_store)
        m = READER_POST.match(scope["path"])
        if m and not self.token_ok(m.group(1)):
            return await _json(send, 403, {"error": "unknown or missing invite token"})
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body:
            return await _json(send, 413, {"error": f"request body over {self.max_body} bytes"})
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await _json(send, 413, {"error": f"request body over {self.max_body} bytes"})
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send_no_store)
