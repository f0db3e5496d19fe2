"""A minimal HTTP/1.1 client for Envoy's admin interface on a Unix socket.

Only what the process helper needs (GET, a whole response, chunked or not); the standard
library has no client for Unix sockets and the runtime should not depend on a test client.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


class AdminError(OSError):
    pass


@dataclass(frozen=True, slots=True)
class AdminResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            raise AdminError("truncated chunked body")
        size = int(line.split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        data = rest[size + 2 :]


def _parse(raw: bytes) -> AdminResponse:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise AdminError("malformed response from the Envoy admin socket")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise AdminError(f"bad status line from the Envoy admin socket: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return AdminResponse(int(parts[1]), headers, body)


async def admin_request(
    socket_path: str, path: str, *, method: str = "GET", timeout: float = 5.0
) -> AdminResponse:
    """One request on a fresh connection (``Connection: close``, so EOF ends the body)."""

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_unix_connection(socket_path)
        try:
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: envoy-admin\r\nConnection: close\r\n"
                "Content-Length: 0\r\n\r\n".encode()
            )
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()

    try:
        raw = await asyncio.wait_for(exchange(), timeout)
    except (TimeoutError, OSError) as exc:
        raise AdminError(f"Envoy admin {socket_path}: {exc!r}") from exc
    return _parse(raw)
