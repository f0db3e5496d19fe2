"""The control plane process: ADS server + registry + cache on one grpc.aio server, and
the timer that rotates workload certificates at half-life.

Also the discovery file ``$TANDEM_HOME/controlplane.json`` that lets ``tandem run`` find (or
decide to start) the one control plane of a machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

import grpc

from tandem.xds.ca import utcnow
from tandem.xds.cache import SnapshotCache
from tandem.xds.identity import Identities
from tandem.xds.ir import Sidecar
from tandem.xds.registry import Registry
from tandem.xds.reload import ResourceWatcher
from tandem.xds.server import AdsServer, add_to_server

__all__ = ["ControlPlane"]

log = logging.getLogger("tandem.xds.controlplane")

_SERVER_OPTIONS = [
    # Find Envoys that vanished without closing their connection (the kernel closes it for
    # a dead process, but not across a partition): then the stream ends and the sidecar is
    # dropped from the mesh.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Envoy pings only if configured to; do not punish it if it does.
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    # gRPC turns SO_REUSEPORT on by default: a second control plane on a fixed port would
    # then share it silently instead of failing.
    ("grpc.so_reuseport", 0),
]


# Upper bound on one rotation wait, so a clock jump cannot postpone rotation for long.
_MAX_ROTATION_WAIT_SECONDS = 300.0


class GrpcService(Protocol):
    def add_to_server(self, server: grpc.aio.Server) -> None: ...


class ControlPlane:
    """Owns the gRPC server and the xDS parts; ``start()`` returns ``host:port``.

    ``identities`` holds the CA, the enrolment key and the mesh-wide mTLS settings; without
    one the control plane makes an in-memory CA (tests, throwaway meshes).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        identities: Identities | None = None,
        socket_path: Path | None = None,
        awaited_pids: frozenset[int] = frozenset(),
        settle_seconds: float = 3.0,
        services: Sequence[GrpcService] = (),
        mesh_resources: Path | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        prepare: Callable[[Sidecar], Sidecar] | None = None,
    ) -> None:
        self._interceptors = tuple(interceptors)  # e.g. leader-only services (Kubernetes HA)
        self._mesh_resources = mesh_resources  # $TANDEM_HOME/resources/ (hot reload)
        self._host = host
        self._port = port
        self._socket_path = socket_path
        self.identities = identities if identities is not None else Identities.ephemeral()
        self.cache = SnapshotCache()
        self._admitted = asyncio.Event()
        self.registry = Registry(
            self.cache,
            self.identities,
            on_admitted=self._admitted.set,
            awaited_pids=awaited_pids,
            prepare=prepare,
        )
        self._services = tuple(services)  # more services on the same server (placement)
        self._settle_seconds = settle_seconds
        self._settle: asyncio.Task[None] | None = None
        self.ads = AdsServer(self.cache, self.registry)
        self._server: grpc.aio.Server | None = None
        self._rotation: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.address = ""

    async def start(self) -> str:
        server = grpc.aio.server(options=_SERVER_OPTIONS, interceptors=self._interceptors)
        add_to_server(server, self.ads)
        for service in self._services:
            service.add_to_server(server)
        if self._socket_path is not None:
            # gRPC replaces a leftover socket file; the caller made sure no live control
            # plane owns it (controlplane.json and its lock).
            target = f"unix:{self._socket_path}"
            if server.add_insecure_port(target) == 0:
                raise OSError(f"cannot listen on {target}")
            self.address = target
        else:
            port = server.add_insecure_port(f"{self._host}:{self._port}")
            if port == 0:
                raise OSError(f"cannot listen on {self._host}:{self._port}")
            self.address = f"{self._host}:{port}"
        await server.start()
        self._server = server
        if self._socket_path is not None:
            # Owner-only: no other local user may talk xDS to us, even to be refused.
            self._socket_path.chmod(0o600)
        self._rotation = asyncio.create_task(self._rotate_forever(), name="certificate-rotation")
        self._watch = asyncio.create_task(
            ResourceWatcher(self.registry, mesh_resources=self._mesh_resources).run(),
            name="hot-reload",
        )
        if self.registry.holding:
            self._settle = asyncio.create_task(self._settle_restart(), name="restart-settle")
        log.info(
            "ADS listening",
            extra={"ads_address": self.address, "mtls": self.identities.settings.enabled},
        )
        return self.address

    async def _settle_restart(self) -> None:
        """After a restart, wait (bounded) for the sidecars that were running to reconnect
        before pushing anything: a snapshot computed from the first reconnecting Envoy
        alone would drop every other app from its routes for a moment."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.registry.all_awaited_back(), self._settle_seconds)
        self.registry.release()

    async def _rotate_forever(self) -> None:
        """Sleep until the earliest half-life (or a new admission), then rotate what is due."""
        while True:
            due = self.identities.next_rotation()
            wait = _MAX_ROTATION_WAIT_SECONDS
            if due is not None:
                # A hair late rather than early, so the certificate is due when we look.
                wait = min(wait, max(0.0, (due - utcnow()).total_seconds()) + 0.005)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._admitted.wait(), wait)
            self._admitted.clear()
            try:
                self.registry.rotate_certificates()
            except Exception:
                log.exception("certificate rotation failed")

    async def stop(self, grace: float | None = 1.0) -> None:
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None
        for task in (self._rotation, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._rotation = self._watch = None
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def __aenter__(self) -> ControlPlane:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
