"""The publish RPCs of ``dapr.proto.runtime.v1.Dapr``: proto in, proto out.

Trace context comes from the call's gRPC metadata (``traceparent``/``tracestate``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dapr.proto.runtime.v1 import pubsub_pb2
from google.protobuf import empty_pb2

from tandem.blocks.pubsub.service import BulkEntry, PublishRequest, PubSubService
from tandem.ext_proc.grpc_api import invocation_metadata


def _trace() -> tuple[str, str]:
    md = invocation_metadata.get() or {}
    return md.get("traceparent", ""), md.get("tracestate", "")


async def publish_event(
    service: PubSubService, request: pubsub_pb2.PublishEventRequest
) -> empty_pb2.Empty:
    traceparent, tracestate = _trace()
    await service.publish(
        PublishRequest(
            pubsub=request.pubsub_name,
            topic=request.topic,
            data=request.data,
            content_type=request.data_content_type,
            metadata=dict(request.metadata),
            traceparent=traceparent,
            tracestate=tracestate,
        )
    )
    return empty_pb2.Empty()


async def bulk_publish_event(
    service: PubSubService, request: pubsub_pb2.BulkPublishRequest
) -> pubsub_pb2.BulkPublishResponse:
    traceparent, tracestate = _trace()
    service.target(request.pubsub_name, request.topic)
    entries = [
        BulkEntry(e.entry_id, e.event, e.content_type, dict(e.metadata)) for e in request.entries
    ]
    failed = await service.bulk_publish(
        request.pubsub_name,
        request.topic,
        entries,
        dict(request.metadata),
        traceparent=traceparent,
        tracestate=tracestate,
    )
    return pubsub_pb2.BulkPublishResponse(
        failedEntries=[
            pubsub_pb2.BulkPublishResponseFailedEntry(entry_id=f.entry_id, error=f.error)
            for f in failed
        ]
    )


def rpcs(service: PubSubService) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """The Dapr gRPC methods this block serves, by RPC name, bound to ``service``."""
    return {
        "PublishEvent": lambda r: publish_event(service, r),
        "BulkPublishEvent": lambda r: bulk_publish_event(service, r),
        "BulkPublishEventAlpha1": lambda r: bulk_publish_event(service, r),
    }
