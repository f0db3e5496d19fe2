"""The runtime's HTTP channel to its app (``127.0.0.1:<app port>``).

One keep-alive connection pool per way to the app (``tandem.blocks.http_client``, our small
HTTP/1.1 client: aiohttp would cost every sidecar with an app several MB, issue 21) for the
runtime's lifetime, used for ``GET /dapr/subscribe`` and ``/dapr/config``, pub/sub deliveries,
input bindings, actors, jobs and configuration updates. Under `tandem run` the requests can
go through the sidecar's Envoy (``socket_path``, its ``dapr_app_channel`` listener), which
speaks the app's protocol (TLS, h2c), holds ``--app-max-concurrency`` for every caller
of the app and runs the ``appHttpPipeline``; when none of that applies (:meth:`route`,
``tandem.blocks.app_route``) and without a socket they go straight to the port. Every request carries
``dapr-api-token`` when ``APP_API_TOKEN`` is set in the runtime's environment; callers add
W3C trace context per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field

from tandem.blocks import http_client
from tandem.blocks.http_client import HttpClientError, HttpPool

log = logging.getLogger("tandem.app_channel")

APP_API_TOKEN_ENV = "APP_API_TOKEN"


@dataclass(frozen=True, slots=True)
class AppResponse:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


async def _connects(
    opening: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
) -> bool:
    try:
        _, writer = await asyncio.wait_for(opening, timeout=1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class AppChannelError(Exception):
    """The app could not be reached (connection refused, reset, timed out)."""


class AppChannel:
    def __init__(
        self,
        port: int,
        *,
        app_id: str,
        host: str = "127.0.0.1",
        token: str | None = None,
        max_connections: int = 100,
        timeout: float = 60.0,
        socket_path: str | None = None,
    ) -> None:
        self.port = port
        self.socket_path = socket_path
        self.host = host
        self._app_id = app_id
        self._token = token or None
        self._max_connections = max_connections
        self._timeout = timeout
        # One pool per way to the app (True: through Envoy's socket), made on first use.
        self._pools: dict[bool, HttpPool] = {}
        self._via_envoy = socket_path is not None
        self.ready = asyncio.Event()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def via_envoy(self) -> bool:
        return self._via_envoy

    def route(self, via_envoy: bool) -> None:
        """Send the next requests through Envoy's app channel (when there is one) or
        straight to the app's port; requests in flight finish on the way they took."""
        via = via_envoy and self.socket_path is not None
        if via != self._via_envoy:
            log.info("requests to the app go %s", "through Envoy" if via else "to its port")
        self._via_envoy = via

    def _client(self) -> HttpPool:
        via = self._via_envoy
        pool = self._pools.get(via)
        if pool is None:
            socket_path = self.socket_path
            if via and socket_path is not None:
                opener = http_client.unix(socket_path)
            else:
                opener = http_client.tcp(self.host, self.port)
            pool = self._pools[via] = HttpPool(
                opener,
                host=f"{self.host}:{self.port}",
                limit=self._max_connections,
                idle_timeout=30.0,
            )
        return pool

    async def port_open(self) -> bool:
        """The app port accepts connections (and so does Envoy's app channel, if used)."""
        if not await _connects(asyncio.open_connection(self.host, self.port)):
            return False
        if self.socket_path is None:
            return True
        return await _connects(asyncio.open_unix_connection(self.socket_path))

    async def wait_ready(self, *, interval: float = 0.05, report_every: float = 5.0) -> None:
        """Wait until the app port accepts connections, logging progress while it does not."""
        started = last = time.monotonic()
        while not await self.port_open():
            now = time.monotonic()
            if now - last >= report_every:
                last = now
                log.info(
                    "waiting for the app to listen on port %d (%.0fs so far)",
                    self.port,
                    now - started,
                )
            await asyncio.sleep(interval)
        log.info("app is listening on port %d", self.port)
        self.ready.set()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> AppResponse:
        hdrs = dict(headers or {})
        hdrs.setdefault("dapr-app-id", self._app_id)
        if self._token:
            hdrs["dapr-api-token"] = self._token
        target = path if path.startswith("/") else "/" + path
        try:
            resp = await self._client().request(
                method,
                target,
                body=body,
                headers=hdrs,
                timeout=timeout if timeout is not None else self._timeout,
            )
        except (HttpClientError, TimeoutError, OSError) as exc:
            raise AppChannelError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        return AppResponse(resp.status, resp.body, resp.headers)

    async def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.close()
