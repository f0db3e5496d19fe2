"""The control plane process: ADS server + registry + cache on one grpc.aio server, and
the timer that rotates workload certificates at half-life.

Also the discovery file ``$TANDEM_HOME/controlplane.json`` that lets ``tandem run`` find (or
decide to start) the one control plane of a machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import grpc

from tandem.procs import pid_alive
from tandem.xds.ca import utcnow
from tandem.xds.cache import SnapshotCache
from tandem.xds.identity import Identities
from tandem.xds.registry import Registry
from tandem.xds.reload import ResourceWatcher
from tandem.xds.server import AdsServer, add_to_server

__all__ = [
    "ControlPlane",
    "ControlPlaneInfo",
    "pid_alive",
    "read_info",
    "remove_info",
    "write_info",
]

log = logging.getLogger("tandem.xds.controlplane")

INFO_FILE = "controlplane.json"
ADS_SOCKET = "xds.sock"
# Written by a deliberate stop (SIGTERM to the control plane, `tandem stop --all`): the
# `tandem run` watchers then leave the control plane down instead of restarting it.
STOPPING_MARKER = "stopping"
# sun_path is 108 bytes on Linux; stay well under it.
_MAX_SOCKET_PATH = 100

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
    ) -> None:
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
        server = grpc.aio.server(options=_SERVER_OPTIONS)
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


@dataclass(frozen=True, slots=True)
class ControlPlaneInfo:
    pid: int
    ads_address: str
    started: float

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "ads_address": self.ads_address, "started": self.started}


def info_path(home: Path) -> Path:
    return home / INFO_FILE


def stopping_path(home: Path) -> Path:
    return home / STOPPING_MARKER


def ads_socket_path(home: Path) -> Path:
    """The control plane's one address, the same across restarts so every Envoy's
    bootstrap keeps pointing at it: ``$TANDEM_HOME/run/xds.sock``, or, when that path is
    too long for a Unix socket, a name derived from the home in a private per-user
    directory (never a shared /tmp name another user could bind first)."""
    inside = home / "run" / ADS_SOCKET
    if len(os.fsencode(inside)) < _MAX_SOCKET_PATH:
        inside.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return inside
    digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16]
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    return _private_dir(base / f"tandem-{os.getuid()}") / f"xds-{digest}.sock"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(f"{path} is not a directory owned by this user; refusing to use it")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_info(home: Path, ads_address: str, pid: int | None = None) -> ControlPlaneInfo:
    """Write ``controlplane.json`` atomically: readers see the old file or the whole new one."""
    info = ControlPlaneInfo(
        pid=os.getpid() if pid is None else pid, ads_address=ads_address, started=time.time()
    )
    home.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".controlplane.", suffix=".tmp", dir=home)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(info.to_json(), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, info_path(home))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return info


def read_info(home: Path) -> ControlPlaneInfo | None:
    """The recorded control plane, or None if there is no readable record."""
    try:
        data = json.loads(info_path(home).read_text())
        return ControlPlaneInfo(
            pid=int(data["pid"]),
            ads_address=str(data["ads_address"]),
            started=float(data["started"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_info(home: Path, pid: int | None = None) -> None:
    """Remove the record, but only if it is ours (a successor may have replaced it)."""
    current = read_info(home)
    if current is not None and current.pid == (os.getpid() if pid is None else pid):
        with contextlib.suppress(FileNotFoundError):
            info_path(home).unlink()
