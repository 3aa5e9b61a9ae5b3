"""Serving a reader study so that it holds under abuse: what the ASGI app cannot see.

* :class:`GuardedH11` — uvicorn's h11 protocol with deadlines: a request's headers must arrive
  within ``header_timeout`` seconds of the connection (or of the previous response) and its
  body within ``body_timeout`` of the headers; else 408 and the connection is closed. (uvicorn
  has a keep-alive timeout but none for a half-sent request, so one slow client could hold a
  connection for ever.)
* :class:`BodyGuard` — ASGI middleware: for a POST to a reader's endpoint the invite token is
  checked *before* any of the body is read (a wrong token is 403 whatever the body); then the
  body is counted as it arrives, however it is framed (Content-Length or chunked), and 413 is
  answered as soon as it passes ``max_body``. Every response gets the no-store headers.
:func:`dermsynth.reader_study.serving.serve` runs the app with both (kept apart so that the app,
which uses the guard, and the server, which runs the app, do not import each other).
"""

from __future__ import annotations

import json
import re
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
READER_POST = re.compile(r"^/api/r/([^/]+)/")


class GuardedH11(H11Protocol):
    """h11 with a header deadline and a body deadline (see the module's docstring)."""

    header_timeout = 10.0
    body_timeout = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._deadline, self._started = None, False
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def _arm(self, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def data_received(self, data: bytes) -> None:
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
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)


def guarded_protocol(header_timeout: float, body_timeout: float) -> type[GuardedH11]:
    return type("GuardedH11", (GuardedH11,), {"header_timeout": header_timeout, "body_timeout": body_timeout})


Send = Callable[[dict], Awaitable[None]]


async def _json(send: Send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
               (b"connection", b"close")] + [(k.lower().encode(), v.encode()) for k, v in NO_STORE.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


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
