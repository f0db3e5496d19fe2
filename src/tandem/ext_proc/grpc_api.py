"""The Dapr gRPC API (`dapr.proto.runtime.v1.Dapr`): wire types in, blocks called, wire types out.

Blocks hand the servicer one table, RPC name → implementation: a coroutine function of the
request for a unary RPC, or a :class:`StreamRpc` for a streaming one (its handler gets the
requests as an async iterator and yields the responses). Every RPC this runtime does not
serve yet answers UNIMPLEMENTED with a Dapr-style message rather than the generated stub's
bare "Method not implemented!".
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from dapr.proto.runtime.v1 import dapr_pb2, dapr_pb2_grpc, metadata_pb2
from google.protobuf import empty_pb2

from tandem.blocks.app_health import go_duration
from tandem.blocks.errors import DaprError, clip, to_grpc_status
from tandem.blocks.metadata import ActorRuntimeInfo, Metadata, MetadataService
from tandem.ext_proc import unimplemented
from tandem.observability import tracing
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics

log = logging.getLogger("tandem.grpc")

T = TypeVar("T")

_EMPTY = empty_pb2.Empty()

# The calling RPC's invocation metadata (lower-cased keys), for RPCs that read it
# (e.g. ``traceparent`` on PublishEvent); set around each table RPC.
invocation_metadata: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "invocation_metadata", default=None
)


@dataclass(frozen=True, slots=True)
class CallStatus:
    """How a failed call ends: gRPC code, message and trailing metadata (rich details)."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


def status_of(exc: Exception) -> CallStatus:
    """The gRPC status a unary RPC's failure ends with, whichever server carries the call:
    a DaprError's own status with rich details, anything else INTERNAL (and logged; call
    this from the ``except`` block)."""
    if isinstance(exc, DaprError):
        status = to_grpc_status(exc)
        return CallStatus(status.code, status.details, tuple(status.trailing_metadata or ()))
    log.exception("unhandled error in gRPC call")
    return CallStatus(grpc.StatusCode.INTERNAL, clip(f"internal error: {exc}"))


def too_large(size: int, limit: int) -> CallStatus:
    return CallStatus(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"grpc: received message larger than max ({size} vs. {limit})",
    )


async def run_unary(impl: UnaryRpc, request: Any, metadata: dict[str, str]) -> Any:
    """One unary RPC's work with its call metadata current (``invocation_metadata`` and the
    caller's trace context): the part both gRPC servers share."""
    invocation_metadata.set(metadata)
    with tracing.incoming(metadata):
        return await impl(request)


async def guarded(context: grpc.aio.ServicerContext, work: Awaitable[T]) -> T:
    """Run one RPC's work; a DaprError becomes its gRPC status with rich details."""
    try:
        return await work
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        status = status_of(exc)
        await context.abort(status.code, status.details, status.trailing_metadata)
        raise


def metadata_proto(service: MetadataService) -> metadata_pb2.GetMetadataResponse:
    md = service.snapshot()
    return metadata_pb2.GetMetadataResponse(
        id=md.id,
        runtime_version=md.runtime_version,
        enabled_features=list(md.enabled_features),
        registered_components=[
            metadata_pb2.RegisteredComponents(
                name=c.name, type=c.type, version=c.version, capabilities=list(c.capabilities)
            )
            for c in md.components
        ],
        extended_metadata=md.extended,
        subscriptions=[
            metadata_pb2.PubsubSubscription(
                pubsub_name=s.pubsub_name,
                topic=s.topic,
                metadata=dict(s.metadata),
                rules=metadata_pb2.PubsubSubscriptionRules(
                    rules=[metadata_pb2.PubsubSubscriptionRule(match=m, path=p) for m, p in s.rules]
                ),
                dead_letter_topic=s.dead_letter_topic,
                type=metadata_pb2.PubsubSubscriptionType.Value(s.type),
            )
            for s in md.subscriptions
        ],
        active_actors_count=[
            metadata_pb2.ActiveActorsCount(type=t, count=n) for t, n in _actors(md).active
        ],
        actor_runtime=_actor_runtime(md),
        app_connection_properties=metadata_pb2.AppConnectionProperties(
            port=md.app.port or 0,
            protocol=md.app.protocol,
            channel_address=md.app.channel_address,
            max_concurrency=md.app.max_concurrency,
            health=_health_properties(md),
        ),
    )


def _actors(md: Metadata) -> ActorRuntimeInfo:
    return md.actors or ActorRuntimeInfo("DISABLED", (), False, "")


def _actor_runtime(md: Metadata) -> metadata_pb2.ActorRuntime | None:
    if md.actors is None:
        return None
    return metadata_pb2.ActorRuntime(
        runtime_status=metadata_pb2.ActorRuntime.ActorRuntimeStatus.Value(md.actors.status),
        active_actors=[
            metadata_pb2.ActiveActorsCount(type=t, count=n) for t, n in md.actors.active
        ],
        host_ready=md.actors.host_ready,
        placement=md.actors.placement,
    )


def _health_properties(md: Metadata) -> metadata_pb2.AppConnectionHealthProperties | None:
    h = md.app.health
    if h is None:
        return None
    return metadata_pb2.AppConnectionHealthProperties(
        health_check_path=h.path,
        health_probe_interval=go_duration(h.interval),
        health_probe_timeout=go_duration(h.timeout),
        health_threshold=h.threshold,
    )


RpcImpl = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
UnaryRpc = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class StreamRpc:
    """A streaming RPC (client, server or bidi): ``handler(requests)`` yields the responses.

    ``requests`` is the client's messages (a single-item iterator for a server-streaming
    RPC). A :class:`DaprError` raised by the handler ends the call with its gRPC status;
    the call's metadata is in :data:`invocation_metadata` while the handler runs.
    """

    handler: Callable[[AsyncIterator[Any]], AsyncGenerator[Any, None]]


Rpc = UnaryRpc | StreamRpc


class DaprGrpcServicer(dapr_pb2_grpc.DaprServicer):
    """Implemented RPCs are looked up in ``rpcs``: name → unary coroutine function or
    :class:`StreamRpc`, matching the RPC's kind in the proto (a mismatch is a startup error)."""

    def __init__(
        self,
        metadata: MetadataService,
        rpcs: Mapping[str, Rpc] | None = None,
        on_shutdown: Callable[[], None] | None = None,
        max_request_bytes: int | None = None,
        metrics: RuntimeMetrics = NO_METRICS,
    ) -> None:
        self._metadata = metadata
        self._on_shutdown = on_shutdown
        table: dict[str, Rpc] = {
            "GetMetadata": self._get_metadata,
            "SetMetadata": self._set_metadata,
            "Shutdown": self._shutdown,
            **(rpcs or {}),
        }
        # The one table of implementations: the HTTP/1.1 door serves the unary RPCs Envoy
        # bridges to it from this same table (grpc_over_http.py).
        self.table: Mapping[str, Rpc] = table
        service = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]
        for method in service.methods:
            impl = table.get(method.name)
            streaming = method.client_streaming or method.server_streaming
            if impl is None:
                setattr(self, method.name, _unimplemented(method.name, method.server_streaming))
            elif isinstance(impl, StreamRpc) != streaming:
                kind = "streaming" if streaming else "unary"
                raise TypeError(f"{method.name} is a {kind} RPC: its implementation is not")
            elif isinstance(impl, StreamRpc) and method.server_streaming:
                setattr(self, method.name, _stream(impl, method.client_streaming))
            elif isinstance(impl, StreamRpc):
                setattr(self, method.name, _client_stream(impl))
            else:
                setattr(
                    self,
                    method.name,
                    _unary(impl, max_request_bytes, metrics, f"{service.full_name}/{method.name}"),
                )

    async def _get_metadata(self, request: Any) -> metadata_pb2.GetMetadataResponse:
        return metadata_proto(self._metadata)

    async def _set_metadata(self, request: Any) -> empty_pb2.Empty:
        self._metadata.set_extended(request.key, request.value)
        return _EMPTY

    async def _shutdown(self, request: Any) -> empty_pb2.Empty:
        if self._on_shutdown is not None:
            self._on_shutdown()
        return _EMPTY


def _call_metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {
        k.lower(): v if isinstance(v, str) else v.decode("latin-1")
        for k, v in context.invocation_metadata() or ()
    }


def _unary(
    impl: UnaryRpc,
    max_request_bytes: int | None,
    metrics: RuntimeMetrics = NO_METRICS,
    full_name: str = "",
) -> RpcImpl:
    method = f"/{full_name}"

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
        status = "OK"
        try:
            return await _call(request, context)
        except BaseException:
            code = context.code()
            status = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
            raise
        finally:
            metrics.grpc(method, status, (time.perf_counter() - start) * 1000)

    async def _call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        # The gRPC server's own receive limit is set higher, for ext_proc messages that carry
        # a whole HTTP body plus headers, so the API's body limit is enforced here.
        if max_request_bytes is not None:
            size = request.ByteSize()
            if size > max_request_bytes:
                status = too_large(size, max_request_bytes)
                await context.abort(status.code, status.details)
        return await guarded(context, run_unary(impl, request, _call_metadata(context)))

    return call


async def _one(request: Any) -> AsyncIterator[Any]:
    yield request


def _stream(rpc: StreamRpc, client_streaming: bool) -> Callable[..., AsyncIterator[Any]]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        invocation_metadata.set(_call_metadata(context))
        requests = request if client_streaming else _one(request)
        try:
            # aclosing: the handler's own clean-up runs when the client goes away mid-stream.
            async with contextlib.aclosing(rpc.handler(requests)) as responses:
                async for response in responses:
                    yield response
        except DaprError as err:
            status = to_grpc_status(err)
            await context.abort(status.code, status.details, status.trailing_metadata)
        except (grpc.aio.AbortError, GeneratorExit):
            raise
        except Exception as exc:
            log.exception("unhandled error in streaming gRPC call")
            await context.abort(grpc.StatusCode.INTERNAL, clip(f"internal error: {exc}"))

    return call


def _client_stream(rpc: StreamRpc) -> RpcImpl:
    """A client-streaming RPC: the handler yields exactly one response."""

    async def call(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        invocation_metadata.set(_call_metadata(context))

        async def last() -> Any:
            last_response = None
            async with contextlib.aclosing(rpc.handler(requests)) as responses:
                async for response in responses:
                    last_response = response
            return last_response

        return await guarded(context, last())

    return call


def _unimplemented(name: str, server_streaming: bool) -> Callable[..., Any]:
    message = unimplemented.grpc_message_for(name)

    if server_streaming:

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)
            yield  # pragma: no cover - makes this an async generator

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    return unary
