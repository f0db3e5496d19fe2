"""Assembles one sidecar runtime: components, blocks, routes, and the gRPC server on a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from tandem.blocks.actors.config import ActorConfig
from tandem.blocks.app_health import AppHealthConfig
from tandem.blocks.health import Health
from tandem.blocks.metadata import AppConnection, MetadataService
from tandem.blocks.registry import ComponentContext, ComponentSpec, UnknownComponentError
from tandem.ext_proc import (
    actors_grpc,
    actors_stream,
    invoke_grpc_app,
    meta_http,
    unimplemented,
)
from tandem.ext_proc.actors_wiring import wire_actors
from tandem.ext_proc.blocks_wiring import (
    Wiring,
    pubsub_policy_wrapper,
    start_app,
    state_policy_wrapper,
    wire_blocks,
    wire_secrets,
)
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.extproc_lazy import LazyExtProc
from tandem.ext_proc.grpc_api import DaprGrpcServicer, Rpc, StreamRpc
from tandem.ext_proc.grpc_decode import InvalidMessageInterceptor
from tandem.ext_proc.grpc_over_http import GrpcUnaryOverHttp
from tandem.ext_proc.http_server import HttpApiServer
from tandem.ext_proc.invoke_grpc_app import OnInvokeHandler
from tandem.ext_proc.invoke_service import InvokeService
from tandem.ext_proc.jobs_wiring import wire_jobs
from tandem.ext_proc.reload import PubSubReload, RuntimeReloader, invocation_warnings, spec_of
from tandem.ext_proc.router import Router
from tandem.ext_proc.task_hub import LazyTaskHub
from tandem.ext_proc.workflows_wiring import WorkflowWiring, wire_workflows
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics, runtime_metrics
from tandem.observability.metrics_server import MetricsServer
from tandem.observability.tracing import runtime_tracing
from tandem.resources.config_status import (
    configuration_warnings,
    denied_component,
    enabled_features,
)

log = logging.getLogger("tandem.runtime")

DEFAULT_MAX_BODY = 4 << 20
DEFAULT_GRACEFUL_SHUTDOWN = 5.0  # daprd's --dapr-graceful-shutdown-seconds default


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    app_id: str
    socket: Path
    home: Path
    namespace: str | None = None  # None: every component loads (NAMESPACE unset)
    resources_paths: tuple[Path, ...] = ()
    config: Path | None = None
    # Kubernetes: the dapr.io/config Configuration --config was written from (its name).
    config_name: str | None = None
    app_port: int | None = None
    app_protocol: str = "http"
    max_body_bytes: int = DEFAULT_MAX_BODY
    # The plain HTTP/1.1 front door for the Dapr HTTP API (Envoy's `tandem_runtime_http`);
    # a gRPC app's sidecar always has it (HTTP invocations of the app are translated there).
    http_socket: Path | None = None
    # The sidecar's Dapr HTTP port (Envoy): where InvokeService sends its invocations.
    dapr_http_port: int | None = None
    # App-facing flags: the runtime reaches its app through Envoy's app channel listener;
    # app health checks hold deliveries while the app is unhealthy.
    app_channel_socket: str | None = None
    # ... or straight to its port when nothing needs Envoy there (blocks/app_route.py).
    app_channel_direct: bool = False
    app_max_concurrency: int | None = None
    app_health: AppHealthConfig | None = None
    app_health_socket: Path | None = None  # where Envoy reads the verdict
    graceful_shutdown_seconds: float = DEFAULT_GRACEFUL_SHUTDOWN
    # Actors: this sidecar's placement host id (its node id), the control plane's address
    # (placement and reminders), and Envoy's listener for calls to other owners.
    node_id: str | None = None
    control_plane: str | None = None
    actor_forward_socket: str | None = None
    # GET /metrics for Envoy's metrics listener (tandem.observability.metrics_server).
    metrics_socket: Path | None = None
    proxy_admin_socket: Path | None = None
    # The `tandem run` supervising this runtime: the Shutdown API asks it to stop the whole
    # sidecar and the app gracefully (alone, the runtime stops itself).
    supervisor_pid: int | None = None
    # `tandem run --runtime-workers N`: 0 is the owner (everything), 1..N-1 serve only the
    # stateless API paths (ext_proc/worker_role.py).
    worker_index: int = 0
    # The owner's: each worker's metrics socket, folded into its /metrics.
    worker_metrics_sockets: tuple[Path, ...] = ()


class StartupError(Exception):
    """A problem that stops the runtime from starting, worded for the person who ran it."""


@dataclass(slots=True)
class Runtime:
    options: RuntimeOptions
    health: Health = field(init=False)
    metadata: MetadataService = field(init=False)
    router: Router = field(default_factory=Router)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _server: grpc.aio.Server | None = None
    _http: HttpApiServer | None = None
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _resources: Any = None  # the loaded tandem.resources.ResourceSet
    _config: Any = None  # the loaded --config (tandem.resources.Configuration)
    _metrics: RuntimeMetrics = NO_METRICS
    _secrets: Any = None  # the opened secret stores (tandem.blocks.secrets.SecretsService)
    _resolver: Any = None  # resolves secretKeyRef (tandem.blocks.secrets.resolve)
    _workflows: WorkflowWiring | None = None

    def __post_init__(self) -> None:
        self.health = Health(self.options.app_id)
        self.metadata = MetadataService(
            app_id=self.options.app_id,
            app=AppConnection(
                port=self.options.app_port,
                protocol=self.options.app_protocol,
                max_concurrency=self.options.app_max_concurrency or 0,
                health=self.options.app_health,
            ),
        )

    async def start(self) -> None:
        ctx = ComponentContext(
            app_id=self.options.app_id,
            namespace=self.options.namespace or "",
            home=self.options.home,
        )
        specs = await asyncio.to_thread(self._load_specs, ctx)
        # First, so a block's own route for the same path and method replaces the 501.
        unimplemented.register_http(self.router)
        try:
            self._metrics = runtime_metrics(
                self._config, self.options.app_id, self.options.namespace or "default"
            )
            tracing = runtime_tracing(self._config, self.options.app_id)
            self._metrics.watch_dropped_spans(lambda: tracing.dropped_spans)
            # Closers run in reverse: the last spans are flushed after everything else.
            self._closers.append(lambda: asyncio.to_thread(tracing.shutdown))
            wiring = wire_blocks(
                self.router,
                specs,
                ctx,
                metadata=self.metadata,
                resiliencies=self._resources.resiliencies if self._resources else (),
                tracing=tracing,
                metrics=self._metrics,
            )
        except (UnknownComponentError, ValueError) as exc:
            raise StartupError(str(exc)) from exc
        if self._secrets is not None:
            wire_secrets(self.router, wiring, self._secrets, ctx, self._metrics)
        self._closers.extend(wiring.closers)
        self.metadata.components = list(wiring.components)
        if self.options.worker_index:
            from tandem.ext_proc.worker_role import start_worker

            await start_worker(self, wiring, ctx)
            return
        assert wiring.state is not None
        try:
            actors = wire_actors(
                self.router,
                wiring.state,
                wiring.component_metadata,
                app_id=self.options.app_id,
                host=self.options.node_id or self.options.app_id,
                control_plane=self.options.control_plane,
                forward_socket=self.options.actor_forward_socket,
                resiliencies=self._resources.resiliencies if self._resources else (),
                metrics=self._metrics,
            )
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        wiring.rpcs.update(actors_grpc.rpcs(actors.service))
        wiring.rpcs["SubscribeActorEventsAlpha1"] = StreamRpc(
            actors_stream.rpc(actors.host_stream, actors.unhost_stream)
        )
        self._closers.append(actors.close)
        self.metadata.actors = actors.info
        jobs = wire_jobs(
            self.router,
            wiring,
            actors,
            app_id=self.options.app_id,
            control_plane=self.options.control_plane,
            has_app=self.options.app_port is not None,
        )
        self._closers.append(jobs.close)
        workflows = wire_workflows(
            actors.service.state,
            actors,
            app_id=self.options.app_id,
            namespace=self.options.namespace or "default",
            settings=self._config.workflow if self._config is not None else None,
            metrics=self._metrics,
        )
        self._workflows = workflows
        workflows.register(self.router, wiring.rpcs)
        self._closers.append(workflows.close)
        self._start_reloader(wiring, ctx)
        self._metrics.loaded(
            len(wiring.components),
            [r.name for r in self._resources.resiliencies] if self._resources else (),
        )
        if self.options.metrics_socket is not None:
            metrics_server = MetricsServer(
                self._metrics,
                self.options.metrics_socket,
                self.options.proxy_admin_socket,
                self.options.worker_metrics_sockets,
            )
            await metrics_server.start()
            self._closers.append(metrics_server.stop)
        meta_http.register(self.router, self.health, self.metadata, self.request_shutdown)
        invoke_grpc_app.register(
            self.router, OnInvokeHandler(self.options.app_id, lambda: wiring.app_grpc)
        )
        invoke_service = InvokeService(self.options.dapr_http_port)
        wiring.rpcs["InvokeService"] = invoke_service
        self._closers.append(invoke_service.close)
        await self._serve(wiring.rpcs)
        for start in wiring.starters:
            await start()
        self.health.mark_ready("components")
        app_grpc = self.options.app_protocol in ("grpc", "grpcs")
        if self.options.app_port is not None:
            # Closers run in reverse: deliveries drain before the components close.
            self._closers.append(
                start_app(
                    wiring,
                    app_id=self.options.app_id,
                    port=self.options.app_port,
                    protocol=self.options.app_protocol,
                    health=self.health,
                    metadata=self.metadata,
                    subscriptions=self._resources.subscriptions if self._resources else (),
                    resiliencies=self._resources.resiliencies if self._resources else (),
                    channel_socket=self.options.app_channel_socket,
                    health_checks=self.options.app_health,
                    health_socket=self.options.app_health_socket,
                    # A gRPC app hosts actors over the actor stream, not /dapr/config.
                    on_app_ready=() if app_grpc else (actors.on_app_ready,),
                )
            )
        self._route_app_channel(wiring, self._config)
        if self.options.app_port is None or app_grpc:
            await actors.start_placement(ActorConfig.none())  # routes calls, hosts nothing
        log.info(
            "runtime ready",
            extra={
                "app_id": self.options.app_id,
                "socket": str(self.options.socket),
                "components": [c.name for c in wiring.components],
            },
        )

    def request_shutdown(self) -> None:
        """Dapr's Shutdown API: the sidecar stops gracefully, as on SIGTERM. Scheduled, so
        the caller gets its answer first."""
        pid = self.options.supervisor_pid

        def stop() -> None:
            if pid is None:
                self.stopped.set()
                return
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                self.stopped.set()

        log.info("shutdown requested through the API")
        asyncio.get_running_loop().call_later(0.1, stop)

    def _route_app_channel(self, wiring: Wiring, config: Any) -> None:
        """Requests to the app through Envoy's app channel, or straight to the port
        (blocks/app_route.py); called at start and on each reload of ``--config``."""
        from tandem.blocks.app_route import needs_envoy

        o = self.options
        if wiring.app_channel is None:
            return
        pipeline = bool(config is not None and config.app_http_pipeline)
        wiring.app_channel.route(
            not o.app_channel_direct or needs_envoy(o.app_protocol, o.app_max_concurrency, pipeline)
        )

    def _start_reloader(self, wiring: Wiring, ctx: ComponentContext) -> None:
        """Hot reload of the resources (ext_proc/reload.py); closers run in reverse, so the
        watcher stops before the stores close."""
        if wiring.state is None or self._resources is None:
            return
        reloader = RuntimeReloader(
            paths=tuple(self.options.resources_paths),
            config=self.options.config,
            app_id=self.options.app_id,
            namespace=self.options.namespace,
            ctx=ctx,
            state=wiring.state,
            metadata=self.metadata,
            wrap=functools.partial(state_policy_wrapper, metrics=self._metrics),
            pubsub=(
                PubSubReload(
                    wiring.pubsub,
                    functools.partial(pubsub_policy_wrapper, metrics=self._metrics),
                    wiring.streams,
                    lambda: wiring.app_subscriptions,
                )
                if wiring.pubsub is not None
                else None
            ),
            # The owner's to write; workers reload on their own (worker_role.py).
            version_dir=None if self.options.worker_index else self.options.socket.parent,
            resolve=self._resolver.spec if self._resolver is not None else spec_of,
            swaps=tuple(wiring.swaps),
            on_config=functools.partial(self._route_app_channel, wiring),
        )
        reloader.start(self._resources)
        task = asyncio.create_task(reloader.run(), name="hot-reload")

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await reloader.close()

        self._closers.append(stop)

    def _load_specs(self, ctx: ComponentContext) -> list[ComponentSpec]:
        from tandem.blocks.secrets.resolve import SECRET_STORE_BLOCK, open_secret_stores
        from tandem.resources import ResourceError, load_configuration, load_resources

        try:
            if self.options.config is not None:
                if self.options.config_name is not None and not self.options.config.is_file():
                    # Dapr's failure: the pod's Configuration is not in its namespace.
                    from tandem.k8s.config_name import missing_message

                    raise StartupError(
                        missing_message(
                            self.options.namespace or "default", self.options.config_name
                        )
                    )
                # Validated at start so a bad --config fails here, naming file, field and reason.
                self._config = load_configuration(self.options.config)
            resources = load_resources(
                list(self.options.resources_paths),
                app_id=self.options.app_id,
                namespace=self.options.namespace,
            )
        except ResourceError as exc:
            raise StartupError(str(exc)) from exc
        self._resources = resources
        # Invocation policies and HTTP endpoints live in Envoy; say here, once, what of
        # them Envoy cannot do.
        for warning in invocation_warnings(resources):
            log.warning("%s", warning)
        if self._config is not None:
            for warning in configuration_warnings(self._config):
                log.warning("%s", warning)
            self.metadata.enabled_features = enabled_features(self._config)
        for c in resources.components:
            denied = denied_component(self._config, c.type, c.version) if self._config else None
            if denied is not None:
                raise StartupError(
                    f"component {c.name} ({c.type}/{c.version}) is refused by "
                    f"{self._config.source}: spec.components.deny lists {denied!r}"
                )
        # Secret stores first: every other component's secretKeyRef is resolved from them.
        try:
            self._secrets, self._resolver = open_secret_stores(
                resources.components,
                ctx,
                scopes=self._config.secret_scopes if self._config is not None else (),
            )
            return [
                self._resolver.spec(c)
                for c in resources.components
                if c.block != SECRET_STORE_BLOCK
            ]
        except ResourceError as exc:
            raise StartupError(str(exc)) from exc

    async def _serve(self, grpc_rpcs: Mapping[str, Rpc]) -> None:
        limit = self.options.max_body_bytes + (1 << 20)
        server = grpc.aio.server(
            interceptors=[InvalidMessageInterceptor()],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        dispatcher = Dispatcher(self.router, self._metrics)
        servicer = DaprGrpcServicer(
            self.metadata,
            grpc_rpcs,
            on_shutdown=self.request_shutdown,
            max_request_bytes=self.options.max_body_bytes,
            metrics=self._metrics,
        )
        dapr_pb2_grpc.add_DaprServicer_to_server(servicer, server)
        workflows = self._workflows
        task_hub = LazyTaskHub(lambda: workflows.engine if workflows else None)
        server.add_generic_rpc_handlers((LazyExtProc(dispatcher, self.options.app_id), task_hub))
        sock = self.options.socket
        sock.parent.mkdir(parents=True, exist_ok=True)
        sock.unlink(missing_ok=True)
        server.add_insecure_port(f"unix:{sock}")
        if self.options.http_socket is not None:
            # Before the gRPC socket appears: `tandem run` waits for that one first.
            self._http = HttpApiServer(
                dispatcher,
                app_id=self.options.app_id,
                max_body_bytes=self.options.max_body_bytes,
                socket_path=self.options.http_socket,
                # Unary gRPC API calls, bridged by Envoy, from the servicer's own table.
                grpc_unary=GrpcUnaryOverHttp(
                    servicer.table, self.options.max_body_bytes, self._metrics, task_hub.servicer
                ),
            )
            await self._http.start()
        await server.start()
        self._server = server

    async def stop(self, grace: float = 2.0) -> None:
        self.health.mark_not_ready("shutdown")
        if self._http is not None:
            await self._http.stop(grace)
        if self._server is not None:
            await self._server.stop(grace)
        for close in reversed(self._closers):
            try:
                await close()
            except Exception:
                log.exception("closing a component failed")
        self.options.socket.unlink(missing_ok=True)
