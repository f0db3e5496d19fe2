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
import re
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import httptools

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

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


class _Connection:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0  # loop time it went back to the pool

    def usable(self) -> bool:
        # An idle connection the server closed (EOF seen) or wrote to unasked is dropped.
        return not (
            self.writer.is_closing()
            or self.reader.at_eof()
            or len(getattr(self.reader, "_buffer", b""))
        )

    def close(self) -> None:
        self.writer.close()


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
        async with asyncio.timeout(timeout), self._slots:
            conn = self._take()
            if conn is not None:
                try:
                    return await self._exchange(conn, method, head, body)
                except _NothingReceived:
                    pass  # the server had closed it: once more, on a fresh one
            conn = _Connection(*await self._open())
            try:
                return await self._exchange(conn, method, head, body)
            except _NothingReceived as exc:
                raise exc.__cause__ or ServerDisconnectedError("no response") from None

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

    async def _exchange(self, conn: _Connection, method: str, head: bytes, body: bytes) -> Response:
        """One request and its response on ``conn``; the connection goes back to the pool or
        is closed, whatever happens (a timeout or cancellation closes it)."""
        reading = _Reading(head_only=method == "HEAD")
        received = False
        keep = False
        try:
            try:
                conn.writer.write(head + body if len(body) < _READ_SIZE else head)
                if len(body) >= _READ_SIZE:
                    conn.writer.write(body)
                await conn.writer.drain()
                while not reading.done:
                    data = await conn.reader.read(_READ_SIZE)
                    if not data:
                        break
                    received = True
                    reading.parser.feed_data(data)
            except OSError as exc:
                if not received:
                    raise _NothingReceived() from exc
                raise
            except httptools.HttpParserError as exc:
                raise HttpClientError(f"malformed response: {exc}") from exc
            if not reading.done:
                if not received:
                    raise _NothingReceived() from ServerDisconnectedError(
                        "the server closed the connection without answering"
                    )
                if not reading.headers_done or reading.sized:
                    raise ServerDisconnectedError("the server closed the connection mid-response")
                # No length given: the body ran to the close.
            headers = Headers(reading.pairs)
            body_out = _decoded(b"".join(reading.chunks), headers.get("content-encoding", ""))
            keep = (
                reading.done
                and reading.keep_alive
                and not reading.trailing
                and not conn.reader.at_eof()
            )
            return Response(reading.status, headers, body_out)
        finally:
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
        for conn in idle:
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()


class _NothingReceived(Exception):
    """The connection failed before any byte of the response arrived (safe to resend on a
    fresh connection when this one was reused)."""
