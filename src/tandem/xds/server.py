"""ADS (state of the world) over grpc.aio. Knows how to speak xDS, not what resources mean.

Each stream: the first request names the node; :class:`StreamCallbacks` learns about it
(the registry validates its metadata and recomputes snapshots), then the stream follows the
node's snapshots in the cache through a watch, and :class:`tandem.xds.stream.AdsStream`
decides what to send. When the stream ends, for any reason, the callbacks hear about it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tandem.xds.cache import Snapshot, SnapshotCache
from tandem.xds.stream import AdsStream, StreamCounters

log = logging.getLogger("tandem.xds.server")

_COUNTER_FIELDS = ("responses", "acks", "nacks", "stale")


class StreamCallbacks(Protocol):
    def on_stream_open(self, stream_id: int, node: base_pb2.Node) -> None:
        """Called before anything is sent; raise ValueError (malformed node) or
        PermissionError (not allowed) to refuse the stream."""

    def on_stream_closed(self, stream_id: int, node_id: str) -> None: ...


class AdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, cache: SnapshotCache, callbacks: StreamCallbacks) -> None:
        self._cache = cache
        self._callbacks = callbacks
        self._ids = itertools.count(1)
        # Counters of closed streams; live ones are summed in on demand (see counters()).
        self._closed_totals = StreamCounters()
        self._live: dict[int, AdsStream] = {}

    @property
    def open_streams(self) -> int:
        return len(self._live)

    def counters(self) -> StreamCounters:
        """Responses, ACKs, NACKs and stale requests over every stream so far."""
        total = StreamCounters(**{k: getattr(self._closed_totals, k) for k in _COUNTER_FIELDS})
        for stream in self._live.values():
            for name in _COUNTER_FIELDS:
                setattr(total, name, getattr(total, name) + getattr(stream.counters, name))
        return total

    async def StreamAggregatedResources(  # noqa: N802 (gRPC method name)
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            return
        node_id = first.node.id
        if not node_id:
            # set_node_on_first_message_only: the node must be on the first request.
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first request carries no node")
        stream_id = next(self._ids)
        try:
            self._callbacks.on_stream_open(stream_id, first.node)
        except ValueError as exc:
            log.warning("stream refused", extra={"node": node_id, "error": str(exc)})
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except PermissionError as exc:
            log.warning("stream refused", extra={"node": node_id, "error": str(exc)})
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        log.info("stream open", extra={"node": node_id, "stream": stream_id})
        stream = AdsStream(node_id=node_id, log=log)
        self._live[stream_id] = stream
        try:
            await self._serve(stream, first, request_iterator, context)
        finally:
            del self._live[stream_id]
            for name in _COUNTER_FIELDS:
                total = getattr(self._closed_totals, name) + getattr(stream.counters, name)
                setattr(self._closed_totals, name, total)
            self._callbacks.on_stream_closed(stream_id, node_id)
            log.info("stream closed", extra={"node": node_id, "stream": stream_id})

    async def _serve(
        self,
        stream: AdsStream,
        first: discovery_pb2.DiscoveryRequest,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        watch = self._cache.watch(stream.node_id)
        requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await requests.put(request)
            finally:
                await requests.put(None)

        reader = asyncio.create_task(read(), name=f"ads-read-{stream.node_id}")
        next_request: asyncio.Task[discovery_pb2.DiscoveryRequest | None] | None = None
        next_snapshot: asyncio.Task[Snapshot | None] | None = None
        try:
            # The registry set this node's snapshot in on_stream_open, so the watch already
            # holds it: take it before answering the first request.
            snapshot = self._cache.get_snapshot(stream.node_id)
            if snapshot is not None:
                stream.snapshot = snapshot
            await self._send(context, stream.on_request(first))
            while True:
                if next_request is None:
                    next_request = asyncio.create_task(requests.get())
                if next_snapshot is None:
                    next_snapshot = asyncio.create_task(watch.next())
                done, _ = await asyncio.wait(
                    {next_request, next_snapshot}, return_when=asyncio.FIRST_COMPLETED
                )
                # Requests first: an ACK must be recorded before deciding on a new push.
                if next_request in done:
                    request = next_request.result()
                    next_request = None
                    if request is None:
                        return
                    await self._send(context, stream.on_request(request))
                if next_snapshot in done:
                    snapshot = next_snapshot.result()
                    next_snapshot = None
                    if snapshot is not None:
                        await self._send(context, stream.on_snapshot(snapshot))
        finally:
            watch.cancel()
            for task in (reader, next_request, next_snapshot):
                if task is not None:
                    task.cancel()

    async def _send(
        self,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        responses: list[discovery_pb2.DiscoveryResponse],
    ) -> None:
        for response in responses:
            await context.write(response)

    async def DeltaAggregatedResources(  # noqa: N802 (gRPC method name)
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "this control plane serves state-of-the-world ADS only"
        )


def add_to_server(server: grpc.aio.Server, ads: AdsServer) -> None:
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, server)  # type: ignore[no-untyped-call]
