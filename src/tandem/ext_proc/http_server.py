"""The plain HTTP/1.1 front door: Envoy proxies the Dapr HTTP API to this server on a Unix socket.

The second door next to ext_proc (``extproc.py``), selected per sidecar by the node metadata
``api_transport: http``. Both build the same :class:`ApiRequest` and call the same
``Dispatcher``; this one costs one HTTP/1.1 exchange on a kept-alive connection instead of a
gRPC stream per request (see ``docs/design/sidecar-contract.md``).

- Parsing is ``httptools`` (llhttp): Content-Length and chunked bodies, keep-alive, and
  pipelined requests, answered one at a time in order.
- The body limit is enforced here, not by Envoy's buffer filter (which would hold every body
  in Envoy before the first byte reaches us): a Content-Length over ``max_body_bytes`` is
  refused with 413 ``ERR_REQUEST_TOO_LARGE`` before any of the body is read; a chunked body
  is refused as soon as it passes the limit. Both end the connection (see ``_linger``).
- The app id comes from the ``x-tandem-app-id`` header Envoy's route sets (never seen by
  handlers), else the runtime's own.
- A malformed request gets 400 ``ERR_MALFORMED_REQUEST`` and a close; a handler that raises
  gets 500 ``ERR_INTERNAL`` and the connection keeps serving. A client that goes away while a
  handler runs does not cancel it (a state write either happens or not, as with any client
  that hangs up); its answer is dropped. A unary gRPC call bridged by Envoy is the
  exception: a cancelled or timed-out gRPC call resets the stream, Envoy closes this
  connection, and the handler is cancelled, as grpc.aio cancels a handler whose call ends
  (a wait on a workflow, an invocation of a slow app stop there and then).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus
from pathlib import Path
from typing import cast

import httptools

from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.grpc_over_http import (
    BRIDGE_HEADER,
    FRAME_HEADER_BYTES,
    RECEIVE_SLACK_BYTES,
    is_grpc,
    request_too_large,
)

log = logging.getLogger("tandem.ext_proc.http")

Dispatch = Callable[[ApiRequest], Awaitable[ApiResponse]]

APP_ID_HEADER = "x-tandem-app-id"
# Requests parsed ahead of the one being answered before the socket stops being read.
_MAX_PIPELINED = 16
# Bodies above this go out in their own write instead of being copied after the head.
_COPY_BODY_LIMIT = 64 * 1024
# After a refusal, how long and how much of the peer's unread request we drain and drop
# before closing anyway (see _Connection._linger).
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 64 << 20


def _status_line(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {code} {phrase}\r\n".encode("latin-1")


_STATUS_LINES: dict[int, bytes] = {code: _status_line(code) for code in range(100, 600)}
_METHODS: dict[bytes, str] = {
    m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
}
# No body and no content-length on these (RFC 9110 §8.6).
_BODYLESS = frozenset({204, 304, *range(100, 200)})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"
_JSON_TYPE = b"content-type: application/json\r\n"


def render(resp: ApiResponse, keep_alive: bool) -> tuple[bytes, bytes]:
    """(head, body) of the HTTP/1.1 answer; raises ValueError on a header that would split."""
    status = resp.status
    line = _STATUS_LINES.get(status) or _status_line(status)
    parts = [line]
    for key, value in resp.headers:
        if b"\n" in value or b"\r" in value:
            raise ValueError(f"response header {key!r} holds a line break")
        parts.append(b"%s: %s\r\n" % (key.encode("latin-1"), value))
    body = resp.body
    if status in _BODYLESS:
        body = b""
    else:
        if body and resp.content_type:
            parts.append(
                _JSON_TYPE
                if resp.content_type == b"application/json"
                else b"content-type: %s\r\n" % resp.content_type
            )
        parts.append(b"content-length: %d\r\n" % len(body))
    if not keep_alive:
        parts.append(_CLOSE)
    parts.append(b"\r\n")
    return b"".join(parts), body


def _error(code: str, message: str) -> ApiResponse:
    return ApiResponse.error(DaprError(code, message))


class _RequestTooLarge(Exception):
    pass


class _BadRequest(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One kept-alive connection from Envoy: parse, dispatch in order, write back."""

    __slots__ = (
        "_server",
        "_transport",
        "_parser",
        "_url",
        "_headers",
        "_chunks",
        "_size",
        "_ready",
        "_task",
        "_closing",
        "_read_paused",
        "_write_paused",
        "_drained",
        "_lingering",
        "_discarded",
        "_refusal",
        "_grpc",
        "_limit",
        "_answering_grpc",
    )

    def __init__(self, server: HttpApiServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self._ready: deque[tuple[ApiRequest, bool]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._read_paused = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._lingering: asyncio.TimerHandle | None = None
        self._discarded = 0
        # An answer that ends the connection once the answers before it are written.
        self._refusal: ApiResponse | None = None
        # The request being read is a unary gRPC call bridged by Envoy (grpc_over_http.py):
        # it may be as large as grpc.aio would take, and its refusals are gRPC's.
        self._grpc = False
        self._limit = server.max_body_bytes
        # The answer in progress is to a bridged gRPC call: cancelled if the peer goes.
        self._answering_grpc = False

    # --- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses).
        self._transport = cast(asyncio.Transport, transport)
        self._server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._answering_grpc and self._task is not None:
            self._task.cancel()
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None
        self._ready.clear()
        self._server._connections.discard(self)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._refusal is not None:
            if self._lingering is not None:
                self._discarded += len(data)
                if self._discarded > _LINGER_BYTES:
                    self._close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _RequestTooLarge) and self._grpc:
                length = self._headers.get("content-length")
                size = int(length) - FRAME_HEADER_BYTES if length is not None else None
                limit = self._server.max_body_bytes + RECEIVE_SLACK_BYTES
                self._refuse(request_too_large(size, limit))
            elif isinstance(cause, _RequestTooLarge):
                self._refuse(
                    _error(
                        "ERR_REQUEST_TOO_LARGE",
                        f"request body exceeds the limit of {self._server.max_body_bytes} bytes",
                    )
                )
            elif isinstance(cause, _BadRequest):
                self._refuse(_error("ERR_MALFORMED_REQUEST", f"malformed HTTP request: {cause}"))
            else:  # a bug in a callback: never go on with a half-parsed stream
                log.error("HTTP parser callback failed", exc_info=cause)
                self._refuse(_error("ERR_INTERNAL", "internal error reading the request"))
            return
        except httptools.HttpParserUpgrade:
            self._refuse(_error("ERR_MALFORMED_REQUEST", "protocol upgrades are not supported"))
            return
        except httptools.HttpParserError as exc:
            self._refuse(_error("ERR_MALFORMED_REQUEST", f"malformed HTTP request: {exc}"))
            return
        if self._ready and self._task is None:
            self._task = self._server.spawn(self._serve_ready())
        if len(self._ready) > _MAX_PIPELINED and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- httptools callbacks -----------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._chunks = []
        self._size = 0
        self._grpc = False
        self._limit = self._server.max_body_bytes

    def on_url(self, url: bytes) -> None:
        # llhttp may hand the URL over in pieces when it spans two reads.
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self._headers
        if key in headers:
            headers[key] = f"{headers[key]}, {text}"
        else:
            headers[key] = text

    def on_headers_complete(self) -> None:
        headers = self._headers
        if BRIDGE_HEADER in headers and is_grpc(headers.get("content-type", "")):
            self._grpc = True
            self._limit = self._server.max_body_bytes + RECEIVE_SLACK_BYTES + FRAME_HEADER_BYTES
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise _BadRequest(f"content-length {length[:40]!r}")
            if int(length) > self._limit:
                raise _RequestTooLarge
        if (
            self._headers.get("expect", "").lower() == "100-continue"
            and self._task is None
            and not self._ready
            and self._transport is not None
        ):
            # Only when nothing is being answered: a 100 must not overtake earlier answers.
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._limit:
            raise _RequestTooLarge
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        method = parser.get_method()
        path, _, query = self._url.decode("latin-1").partition("?")
        headers = self._headers
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        app_id = headers.pop(APP_ID_HEADER, None) or self._server.app_id
        req = ApiRequest(
            method=_METHODS.get(method) or method.decode("latin-1"),
            path=path,
            query=query,
            headers=headers,
            body=body,
            app_id=app_id,
        )
        self._ready.append((req, parser.should_keep_alive()))

    # --- answering ---------------------------------------------------------------------
    async def _serve_ready(self) -> None:
        try:
            while self._ready and not self._closing:
                req, keep_alive = self._ready.popleft()
                self._answering_grpc = bridged = self._server.bridged(req)
                resp = await self._server.answer(req, bridged)
                self._answering_grpc = False
                if self._closing:
                    return
                self._write(resp, keep_alive, to_head=req.method == "HEAD")
                if not keep_alive:
                    self._linger()
                    return
                if self._write_paused:
                    self._drained = asyncio.get_running_loop().create_future()
                    await self._drained
                    self._drained = None
                if self._read_paused and self._transport is not None and not self._refusal:
                    self._read_paused = False
                    self._transport.resume_reading()
            if self._refusal is not None and not self._closing:
                self._send_refusal()
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # connection_lost cancelled an abandoned gRPC call: nothing is owed to anyone.
        finally:
            self._task = None
            self._answering_grpc = False

    def _write(self, resp: ApiResponse, keep_alive: bool, *, to_head: bool = False) -> None:
        assert self._transport is not None
        try:
            head, body = render(resp, keep_alive)
        except ValueError as exc:
            log.error("refusing to send a malformed answer: %s", exc)
            bad = _error("ERR_INTERNAL", "internal error: bad response header")
            head, body = render(bad, keep_alive)
        if to_head:  # the answer to HEAD announces a length but carries no body
            body = b""
        if len(body) > _COPY_BODY_LIMIT:
            self._transport.write(head)
            self._transport.write(body)
        else:
            self._transport.write(head + body)

    def _refuse(self, resp: ApiResponse) -> None:
        """Parse nothing more; answer ``resp`` after the answers still owed (pipelining), then
        end the connection: the stream cannot be trusted (or carries a body we will not
        read)."""
        self._refusal = resp
        if self._task is None and not self._ready:
            self._send_refusal()
            return
        if self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()
        if self._task is None:  # requests parsed in the same read are still owed answers
            self._task = self._server.spawn(self._serve_ready())

    def _send_refusal(self) -> None:
        resp, self._refusal = self._refusal, None
        self._ready.clear()
        if resp is not None and self._transport is not None and not self._transport.is_closing():
            self._write(resp, keep_alive=False)
        self._linger()

    def _linger(self) -> None:
        """Close after the peer has read the answer.

        Closing a Unix socket with unread data makes the peer's next read fail with
        ECONNRESET, possibly before it reads our answer (Envoy then reports a reset instead
        of the 413). So: end our side (EOF after the answer), drop whatever still arrives,
        and close when the peer does — or after ``_LINGER_SECONDS`` / ``_LINGER_BYTES``.
        """
        self._closing = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingering = asyncio.get_running_loop().call_later(_LINGER_SECONDS, self._close)

    def _close(self) -> None:
        self._closing = True
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def close_if_idle(self) -> asyncio.Task[None] | None:
        """Close now if no answer is in progress, else return the task producing it."""
        if self._task is not None:
            return self._task
        self._close()
        return None


class HttpApiServer:
    """The HTTP/1.1 Dapr API server on a Unix socket, answering through ``dispatch``."""

    def __init__(
        self,
        dispatch: Dispatch,
        *,
        app_id: str,
        max_body_bytes: int,
        socket_path: Path,
        grpc_unary: Dispatch | None = None,
    ) -> None:
        self._dispatch = dispatch
        # Unary gRPC API calls Envoy bridges here (grpc_over_http.py); None: not served.
        self._grpc_unary = grpc_unary
        self.app_id = app_id
        self.max_body_bytes = max_body_bytes
        self.socket_path = socket_path
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        # The serving loop, kept: on Python 3.11 each get_running_loop() is a getpid
        # syscall, and ``spawn`` runs once per request (issue 21).
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        # Created under a restrictive umask: only this user (Envoy runs as it) may connect.
        old = os.umask(0o177)
        try:
            self._server = await loop.create_unix_server(lambda: _Connection(self), path=str(path))
        finally:
            os.umask(old)

    def spawn(self, coro: Coroutine[None, None, None]) -> asyncio.Task[None]:
        return (self._loop or asyncio.get_running_loop()).create_task(coro)

    def bridged(self, req: ApiRequest) -> bool:
        """Whether ``req`` is a unary gRPC call Envoy bridged here (and served as one)."""
        return (
            self._grpc_unary is not None
            and BRIDGE_HEADER in req.headers
            and is_grpc(req.headers.get("content-type", ""))
        )

    async def answer(self, req: ApiRequest, bridged: bool) -> ApiResponse:
        """``bridged``: :meth:`bridged` of ``req``, which the connection has asked already."""
        try:
            if bridged and self._grpc_unary is not None:
                return await self._grpc_unary(req)
            return await self._dispatch(req)
        except Exception as exc:  # the Dispatcher maps errors; this guards the guard
            log.exception("unhandled error in %s %s", req.method, req.path)
            return _error("ERR_INTERNAL", f"internal error: {exc}")

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, let answers in progress finish (up to ``grace``), then close all."""
        if self._server is not None:
            self._server.close()
        busy = [t for c in list(self._connections) if (t := c.close_if_idle()) is not None]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        for conn in list(self._connections):
            conn._close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self.socket_path.unlink(missing_ok=True)
