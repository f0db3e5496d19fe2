"""A minimal HTTP/1.1 GET used to wait for a sidecar; no client library on the start-up path."""

from __future__ import annotations

import asyncio


async def http_status(host: str, port: int, path: str, timeout: float = 1.0) -> int | None:
    """The response status of ``GET path``, or None when nothing answers."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
