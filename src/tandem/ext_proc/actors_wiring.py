"""Puts the actors block together in a runtime: state, placement stream, reminders, engine.

The placement stream opens once the app has said which actor types it hosts
(``GET /dapr/config``), or at once for a sidecar without an app: every runtime routes
actor calls, only hosts serve them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import orjson

from tandem.blocks.actors.app_http import HttpActorApp
from tandem.blocks.actors.config import ActorConfig, ActorConfigError, parse_actor_config
from tandem.blocks.actors.engine import ActorApp, ActorEngine
from tandem.blocks.actors.resiliency import ActorPolicies
from tandem.blocks.actors.service import ActorService, ActorSettings
from tandem.blocks.actors.state import ActorState, pick_actor_store
from tandem.blocks.app_channel import AppChannel, AppChannelError
from tandem.blocks.metadata import ActorRuntimeInfo
from tandem.blocks.state.service import StateService
from tandem.ext_proc import actors_http
from tandem.ext_proc.actors_forward import EnvoyForwarder
from tandem.ext_proc.actors_http import LISTING_PATH
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics
from tandem.placement import wire
from tandem.placement.client import FireHandler, JobHandler, PlacementClient
from tandem.resources import Resiliency

log = logging.getLogger("tandem.actors")


class _Reminders:
    """The control plane's reminder API over the placement socket."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    async def call(self, method: str, request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await wire.unary(self._channel, wire.REMINDERS, method)(
            request, timeout=10
        )
        return answer


class PlacementWatcher(Protocol):
    """A user of the runtime's own internal actor types (the workflow engine), told of
    placement changes as the actor engine is."""

    async def moved(self) -> None:
        """Stop what this host no longer serves: after a Prepare (before it is acknowledged)
        and when the stream or the lease is lost."""
        ...

    async def arrived(self) -> None:
        """Take up what this host now serves: after a Commit, or a lapsed lease's return."""
        ...


@dataclass(slots=True)
class ActorWiring:
    service: ActorService
    app_id: str
    host: str
    control_plane: str | None
    forward_socket: str | None
    metrics: RuntimeMetrics = NO_METRICS
    # Delivers job triggers to the app (set by the jobs block when there is an app).
    job: JobHandler | None = None
    _channel: grpc.aio.Channel | None = None
    _client: PlacementClient | None = None
    _placement: asyncio.Task[None] | None = None  # the client's run loop
    # The runtime's own internal actor types (workflow instances), hosted whatever the app
    # says, with where their scheduler firings go.
    internal: dict[str, FireHandler] = field(default_factory=dict)

    _config: ActorConfig | None = None  # what the placement stream was opened with
    _watchers: list[PlacementWatcher] = field(default_factory=list)
    # internal actor type -> how many of them run here (the metadata API's activeActors)
    _running: dict[str, Callable[[], int]] = field(default_factory=dict)

    def watch_placement(
        self, watcher: PlacementWatcher, actor_type: str, running: Callable[[], int]
    ) -> None:
        self._watchers.append(watcher)
        self._running[actor_type] = running

    async def host_internal(self, actor_type: str, fire: FireHandler) -> None:
        """Host ``actor_type`` too from now on (re-opening an open placement stream)."""
        if actor_type in self.internal:
            return
        self.internal[actor_type] = fire
        if self._client is not None and self._config is not None:
            self._client.set_types(self._hosted(self._config))

    async def _fire(self, actor_type: str, actor_id: str, name: str, payload: bytes) -> str:
        handler = self.internal.get(actor_type)
        if handler is not None:
            return await handler(actor_type, actor_id, name, payload)
        return await self.service.fire(actor_type, actor_id, name, payload)

    async def call_scheduler(self, method: str, request: dict[str, Any]) -> dict[str, Any]:
        """A call to the control plane's scheduler (the reminder API)."""
        if self._channel is None:
            raise RuntimeError("no control plane")
        return await _Reminders(self._channel).call(method, request)

    async def start_placement(self, config: ActorConfig) -> None:
        """Open the placement stream, hosting ``config``'s types (none: routing only)."""
        if self.control_plane is None or self._client is not None:
            return
        self._config = config
        service = self.service

        # The engine is looked up at each call: an actor stream may attach one later.
        async def rebalance() -> None:
            if service.engine is not None:
                await service.engine.rebalance()
            await asyncio.gather(*(w.moved() for w in self._watchers))

        async def lost() -> None:
            if service.engine is not None:
                await service.engine.deactivate_all()
            await asyncio.gather(*(w.moved() for w in self._watchers))

        async def committed() -> None:
            for watcher in self._watchers:
                try:
                    await watcher.arrived()
                except Exception:
                    log.exception("taking up what placement moved here failed")

        self._client = PlacementClient(
            self.control_plane,
            host=self.host,
            app_id=self.app_id,
            types=self._hosted(config),
            rebalance=rebalance,
            lost=lost,
            fire=self._fire,
            job=self.job,
            committed=committed,
        )
        service.set_placement(self._client)
        self._placement = asyncio.create_task(self._client.run(), name="placement")

    def _hosted(self, config: ActorConfig) -> list[str]:
        return sorted(set(config.types) | set(self.internal))

    async def _retype(self, config: ActorConfig) -> None:
        """Host ``config``'s types on the open placement stream (or open one)."""
        if self._client is None:
            await self.start_placement(config)
            return
        self._config = config
        self._client.set_types(self._hosted(config))

    async def _stop_placement(self) -> None:
        if self._placement is not None:
            self._placement.cancel()
            await asyncio.gather(self._placement, return_exceptions=True)
        self._placement = self._client = None

    async def host_stream(self, config: ActorConfig, app: ActorApp) -> None:
        """An app registered actor types over the gRPC actor stream: host them."""
        engine = ActorEngine(config, app, self.service, metrics=self.metrics)
        engine.start()
        self.service.attach(engine)
        await self._retype(config)

    async def unhost_stream(self) -> None:
        """The app's actor stream ended: deactivate its actors and stop hosting them."""
        engine = self.service.engine
        self.service.detach()
        if engine is not None:
            await engine.close()
        await self._retype(ActorConfig.none())

    async def on_app_ready(self, channel: AppChannel) -> None:
        """Ask the app for its actor settings; start hosting what it names."""
        config = ActorConfig.none()
        try:
            resp = await channel.request("GET", "/dapr/config", timeout=10)
            if resp.status == 200 and resp.body.strip():
                config = parse_actor_config(orjson.loads(resp.body))
        except (AppChannelError, orjson.JSONDecodeError, ActorConfigError) as exc:
            log.warning("the app's /dapr/config answer is not usable (no actors hosted): %s", exc)
        for note in config.notes:
            log.warning("actor config: %s", note)
        if config.types:
            if self.service.state is None:
                log.warning(
                    "the app hosts actors (%s) but no state store is marked actorStateStore; "
                    "their state calls will fail",
                    ", ".join(sorted(config.types)),
                )
            engine = ActorEngine(config, HttpActorApp(channel), self.service, metrics=self.metrics)
            engine.start()
            self.service.attach(engine)
            log.info("hosting actor types", extra={"types": sorted(config.types)})
        await self.start_placement(config)

    def listing(self) -> dict[str, Any]:
        """Where each live actor is: this host's part (``tandem actors list``)."""
        engine = self.service.engine
        types = engine.hosted_types() if engine is not None else []
        return {
            "host": self.host,
            "appId": self.app_id,
            "actors": {t: engine.active_ids(t) for t in types} if engine is not None else {},
        }

    def info(self) -> ActorRuntimeInfo:
        """The metadata API's ``actorRuntime``: every hosted type, 0 active included."""
        if self.control_plane is None:
            return ActorRuntimeInfo("DISABLED", (), False, "")
        engine = self.service.engine
        counts = engine.active_counts() if engine is not None else {}
        client = self._client
        table = client.fence.committed if client is not None else None
        for actor_type, running in self._running.items():
            ring = table.rings.get(actor_type) if table is not None else None
            if ring is not None and self.host in ring.hosts:  # placed here: listed, as in Dapr
                counts[actor_type] = running()
        connected = client is not None and client.connected.is_set()
        return ActorRuntimeInfo(
            status="RUNNING" if client is not None else "INITIALIZING",
            active=tuple(sorted(counts.items())),
            host_ready=connected and client is not None and client.committed.is_set(),
            placement=f"placement: {'connected' if connected else 'disconnected'}",
        )

    async def close(self) -> None:
        await self._stop_placement()
        if self.service.engine is not None:
            await self.service.engine.close()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()


def wire_actors(
    router: Router,
    state: StateService,
    component_metadata: Mapping[str, Mapping[str, str]],
    *,
    app_id: str,
    host: str,
    control_plane: str | None,
    forward_socket: str | None,
    resiliencies: Sequence[Resiliency] = (),
    metrics: RuntimeMetrics = NO_METRICS,
) -> ActorWiring:
    store = pick_actor_store(state.components, component_metadata)
    actor_state = ActorState(app_id, state.components, store.name) if store is not None else None
    channel = grpc.aio.insecure_channel(control_plane) if control_plane else None
    forwarder = EnvoyForwarder(forward_socket) if forward_socket else None
    service = ActorService(
        ActorSettings(host=host),
        state=actor_state,
        placement=None,
        forwarder=forwarder,
        reminders=_Reminders(channel) if channel is not None else None,
        policies=ActorPolicies(resiliencies, metrics) if resiliencies else None,
    )
    actors_http.register(router, service)
    wiring = ActorWiring(
        service=service,
        app_id=app_id,
        host=host,
        control_plane=control_plane,
        forward_socket=forward_socket,
        metrics=metrics,
        _channel=channel,
    )

    async def listing(req: ApiRequest) -> ApiResponse:
        return ApiResponse.json(wiring.listing())

    # Tandem's own (not Dapr's): read by `tandem actors list` over the runtime's socket.
    router.add("GET", LISTING_PATH, listing)
    return wiring
