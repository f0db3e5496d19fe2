"""A small asyncio HTTP/1.1 client: one keep-alive pool to one server (a TCP port or a Unix socket).

The runtime's channel to its app (``app_channel.py``) uses it instead of aiohttp, which costs a
sidecar several MB of memory for the few calls it makes (issue 21). Responses are parsed by
``httptools`` (llhttp), as the runtime's HTTP door parses requests.

- At most ``limit`` connections are open; a request waits for a free one. Idle connections
  are reused, and closed after ``idle_timeout``.
- A request on a reused connection that fails before any byte of the response arrived (the
  server closed the idle connection meanwhile) is sent once more on a fresh connection.
- Bodies: Content-Length, chunked or read-to-close; none for HEAD, 1xx, 204 and 304.
  gzip and deflate bodies are decompressed (we offer them, as aiohttp did).
- A connection that timed out, failed or was answered ``Connection: close`` is closed,
  never pooled again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote

import httptools

# Opens one connection with the protocol the factory makes (``tcp`` and ``unix`` below).
Opener = Callable[
    [Callable[[], asyncio.Protocol]], Awaitable[tuple[asyncio.BaseTransport, asyncio.Protocol]]
]


def tcp(host: str, port: int) -> Opener:
    def open_tcp(
        factory: Callable[[], asyncio.Protocol],
    ) -> Awaitable[tuple[asyncio.BaseTransport, asyncio.Protocol]]:
        return asyncio.get_running_loop().create_connection(factory, host, port)

    return open_tcp


def unix(path: str) -> Opener:
    def open_unix(
        factory: Callable[[], asyncio.Protocol],
    ) -> Awaitable[tuple[asyncio.BaseTransport, asyncio.Protocol]]:
        return asyncio.get_running_loop().create_unix_connection(factory, path)

    return open_unix


_READ_SIZE = 64 * 1024
# Methods whose requests carry a Content-Length even when empty (as Go's and aiohttp's do).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Characters left as they are in a request target (the rest are percent-encoded).
_TARGET_SAFE = "/?&=%:@!$'()*+,;~-._[]"
# A target made only of those (and alphanumerics) needs no quoting: the common case.
_SAFE_TARGET = re.compile(r"[A-Za-z0-9/?&=%:@!$'()*+,;~._\[\]-]*\Z")
_FORBIDDEN = re.compile("[\r\n\0]")


class HttpClientError(Exception):
    """The server's answer could not be read (malformed, or the connection closed early)."""


class ServerDisconnectedError(HttpClientError):
    """The connection closed before the response was complete."""


class Headers(Mapping[str, str]):
    """Response headers: names looked up case-insensitively, iterated as the server spelt
    them; a repeated name keeps its first value."""

    __slots__ = ("_items",)

    def __init__(self, pairs: list[tuple[str, str]] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in pairs or ():
            self._items.setdefault(name.lower(), (name, value))

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection, read by the event loop's callbacks straight into the response parser
    (no stream reader, no task wake-up per read): ``begin`` a response, write the request,
    await :attr:`answered`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0  # loop time it went back to the pool
        self.reading: _Reading | None = None
        # Resolved when the response is complete, the server closed the connection or it
        # failed (then ``failure``): the exchange reads the outcome from ``reading``.
        self.answered: asyncio.Future[None] | None = None
        self.received = False  # a byte of the current response arrived
        self.eof = False
        self.unasked = False  # the server wrote while no request was out
        self.failure: BaseException | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reading = self.reading
        if reading is None or reading.done:
            self.unasked = True
            if reading is not None:
                reading.trailing = True
            return
        self.received = True
        try:
            reading.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(HttpClientError(f"malformed response: {exc}"))
            return
        if reading.done:
            self._finish(None)

    def eof_received(self) -> bool:
        self.eof = True
        self._finish(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._finish(exc)
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_exception(exc or ConnectionResetError("the connection closed"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    @property
    def paused(self) -> bool:
        """The transport's buffer is full: wait for :meth:`drain` before going on."""
        return self._paused

    async def drain(self) -> None:
        if self._paused:
            self._drained = self._loop.create_future()
            await self._drained

    def begin(self, reading: _Reading) -> asyncio.Future[None]:
        self.reading = reading
        self.received = False
        self.failure = None
        self.answered = self._loop.create_future()
        return self.answered

    def _finish(self, failure: BaseException | None) -> None:
        answered = self.answered
        if answered is not None and not answered.done():
            self.failure = failure
            answered.set_result(None)

    def time_out(self) -> None:
        self._finish(TimeoutError())
        self.close()

    def usable(self) -> bool:
        # An idle connection the server closed (EOF seen) or wrote to unasked is dropped.
        transport = self.transport
        return not (transport is None or transport.is_closing() or self.eof or self.unasked)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Reading:
    """httptools callbacks for one response (interim 1xx answers are skipped)."""

    def __init__(self, head_only: bool) -> None:
        self.head_only = head_only
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.pairs: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.done = False
        self.sized = False  # Content-Length or chunked: EOF before the end is an error.
        # Read at the head: once the message is complete llhttp no longer knows it.
        self.keep_alive = False
        # Bytes after the answer (nothing was asked for them): kept out of it, and the
        # connection is not reused.
        self.trailing = False

    def on_message_begin(self) -> None:
        if self.done:
            self.trailing = True
            return
        self.status = 0
        self.pairs = []
        self.chunks = []
        self.headers_done = self.sized = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.done:
            return
        self.pairs.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.done:
            return
        self.status = self.parser.get_status_code()
        if self._interim():
            return
        self.headers_done = True
        headers = Headers(self.pairs)
        self.sized = "content-length" in headers or (
            "chunked" in headers.get("transfer-encoding", "").lower()
        )
        self.keep_alive = self.parser.should_keep_alive()
        if self.head_only:
            self.done = True  # llhttp does not know the request was HEAD: stop at the head

    def on_body(self, body: bytes) -> None:
        if self.done:
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if not self.done and not self._interim():
            self.done = True

    def _interim(self) -> bool:
        # 100 Continue, 103 Early Hints: the real answer follows on the same connection.
        return 100 <= self.status < 200 and self.status != 101


def _decoded(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not body or encoding not in ("gzip", "x-gzip", "deflate"):
        return body
    try:
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        raise HttpClientError(f"cannot decode the {encoding} body: {exc}") from exc


def _head(method: str, target: str, headers: Mapping[str, str], body: bytes) -> bytes:
    if not _SAFE_TARGET.match(target):
        target = quote(target, safe=_TARGET_SAFE)
    lines = [f"{method} {target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body)}")
    # One scan of all the lines (the request line has none: ours, or quoted) instead of
    # one per character and header: every delivery builds a head.
    if "" in headers or _FORBIDDEN.search("".join(lines)):
        bad = next(n for n, v in headers.items() if not n or _FORBIDDEN.search(n + v))
        raise HttpClientError(f"invalid header {bad!r}")
    text = "\r\n".join(lines)
    return (text + "\r\n\r\n").encode("latin-1", errors="strict")


class HttpPool:
    """Keep-alive connections to one server, at most ``limit`` open."""

    def __init__(
        self, opener: Opener, *, host: str, limit: int = 100, idle_timeout: float = 30.0
    ) -> None:
        self._open = opener
        self._host = host
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []  # the most recently used last
        self._idle_timeout = idle_timeout
        # One timer closes expired idle connections (not one per request); the loop is kept
        # as on Python 3.11 each get_running_loop() is a getpid syscall.
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        timeout: float,
    ) -> Response:
        if self._closed:
            raise HttpClientError("the client is closed")
        headers = headers or {}
        given = {k.lower() for k in headers}
        hdrs = {k: v for k, v in self._defaults() if k.lower() not in given}
        hdrs.update(headers)
        if "content-length" in given:
            hdrs = {k: v for k, v in hdrs.items() if k.lower() != "content-length"}
        if body and "content-type" not in given:
            hdrs["Content-Type"] = "application/octet-stream"
        head = _head(method, target, hdrs, body)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # The waits that may suspend (a free slot, a new connection) run under a timeout
        # context; the exchange itself under one timer (cheaper: no current_task lookups).
        if self._slots.locked():
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        else:
            await self._slots.acquire()  # returns at once
        try:
            conn = self._take()
            if conn is not None:
                try:
                    return await self._exchange(conn, method, head, body, deadline)
                except _NothingReceived:
                    pass  # the server had closed it: once more, on a fresh one
            async with asyncio.timeout_at(deadline):
                _, protocol = await self._open(functools.partial(_Connection, loop))
            conn = cast(_Connection, protocol)
            try:
                return await self._exchange(conn, method, head, body, deadline)
            except _NothingReceived as exc:
                raise exc.__cause__ or ServerDisconnectedError("no response") from None
        finally:
            self._slots.release()

    def _defaults(self) -> tuple[tuple[str, str], ...]:
        return (("Host", self._host), ("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"))

    def _take(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _give_back(self, conn: _Connection) -> None:
        if self._closed or not conn.usable():
            conn.close()
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._idle_timeout, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for ``idle_timeout``; come back for the next one."""
        self._sweeper = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        while self._idle and self._idle[0].idle_since + self._idle_timeout <= now:
            self._idle.pop(0).close()
        if self._idle and not self._closed:
            due = self._idle[0].idle_since + self._idle_timeout - now
            self._sweeper = loop.call_later(due, self._sweep)

    async def _exchange(
        self, conn: _Connection, method: str, head: bytes, body: bytes, deadline: float
    ) -> Response:
        """One request and its response on ``conn``; the connection goes back to the pool or
        is closed, whatever happens (a timeout or cancellation closes it)."""
        reading = _Reading(head_only=method == "HEAD")
        keep = False
        loop = self._loop
        assert loop is not None and conn.transport is not None
        answered = conn.begin(reading)
        timer = loop.call_at(deadline, conn.time_out)
        try:
            if len(body) < _READ_SIZE:
                conn.transport.write(head + body)
            else:
                conn.transport.write(head)
                conn.transport.write(body)
            if conn.paused:
                # A failed connection's outcome is in conn.failure (answered is resolved).
                with contextlib.suppress(OSError):
                    await conn.drain()
            await answered
            failure = conn.failure
            if failure is not None:
                if isinstance(failure, TimeoutError | HttpClientError):
                    raise failure
                if not conn.received:
                    raise _NothingReceived() from failure
                raise failure
            if not reading.done:
                if not conn.received:
                    raise _NothingReceived() from ServerDisconnectedError(
                        "the server closed the connection without answering"
                    )
                if not reading.headers_done or reading.sized:
                    raise ServerDisconnectedError("the server closed the connection mid-response")
                # No length given: the body ran to the close.
            headers = Headers(reading.pairs)
            body_out = _decoded(b"".join(reading.chunks), headers.get("content-encoding", ""))
            keep = reading.done and reading.keep_alive and not reading.trailing and not conn.eof
            return Response(reading.status, headers, body_out)
        finally:
            timer.cancel()
            conn.reading = None
            conn.answered = None
            if keep:
                self._give_back(conn)
            else:
                conn.close()

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _NothingReceived(Exception):
    """The connection failed before any byte of the response arrived (safe to resend on a
    fresh connection when this one was reused)."""
