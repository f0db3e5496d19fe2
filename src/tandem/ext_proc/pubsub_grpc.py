"""The pub/sub RPCs of ``dapr.proto.runtime.v1.Dapr``: proto in, proto out.

Publish, bulk publish, and the streaming subscription ``SubscribeTopicEventsAlpha1``.
Trace context comes from the call's gRPC metadata (``traceparent``/``tracestate``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from dapr.proto.runtime.v1 import appcallback_pb2, pubsub_pb2
from google.protobuf import empty_pb2

from tandem.blocks.errors import DaprError
from tandem.blocks.pubsub.delivery import DeliveryStatus
from tandem.blocks.pubsub.grpc_delivery import topic_event_request
from tandem.blocks.pubsub.service import BulkEntry, PublishRequest, PubSubService
from tandem.blocks.pubsub.streaming import StreamingSubscriptions, StreamSession
from tandem.ext_proc.grpc_api import Rpc, StreamRpc, invocation_metadata


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


_ANSWERS = {
    appcallback_pb2.TopicEventResponse.SUCCESS: DeliveryStatus.SUCCESS,
    appcallback_pb2.TopicEventResponse.RETRY: DeliveryStatus.RETRY,
    appcallback_pb2.TopicEventResponse.DROP: DeliveryStatus.DROP,
}


async def _read_answers(
    requests: AsyncIterator[pubsub_pb2.SubscribeTopicEventsRequestAlpha1], session: StreamSession
) -> None:
    """Hand each ``event_processed`` to the session; when the client stops sending, hang up."""
    try:
        async for req in requests:
            if req.WhichOneof("subscribe_topic_events_request_type") != "event_processed":
                continue  # a second initial_request means nothing; Dapr ignores it too
            done = req.event_processed
            session.answer(done.id, _ANSWERS.get(done.status.status, DeliveryStatus.RETRY))
    finally:
        session.hang_up()


async def subscribe_topic_events(
    streams: StreamingSubscriptions,
    requests: AsyncIterator[pubsub_pb2.SubscribeTopicEventsRequestAlpha1],
) -> AsyncGenerator[pubsub_pb2.SubscribeTopicEventsResponseAlpha1, None]:
    first = await anext(requests, None)
    if first is None or first.WhichOneof("subscribe_topic_events_request_type") != (
        "initial_request"
    ):
        raise DaprError(
            "ERR_BAD_REQUEST", "the first message of the stream must be an initial_request"
        )
    init = first.initial_request
    session = await streams.open(
        init.pubsub_name,
        init.topic,
        dict(init.metadata),
        init.dead_letter_topic if init.HasField("dead_letter_topic") else None,
    )
    reader = asyncio.create_task(_read_answers(requests, session))
    try:
        yield pubsub_pb2.SubscribeTopicEventsResponseAlpha1(
            initial_response=pubsub_pb2.SubscribeTopicEventsResponseInitialAlpha1()
        )
        while (delivery := await session.next()) is not None:
            yield pubsub_pb2.SubscribeTopicEventsResponseAlpha1(
                event_message=topic_event_request(delivery)
            )
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        # Shielded: the call may be cancelled (the client went away) while this runs.
        await asyncio.shield(session.close())


def rpcs(service: PubSubService, streams: StreamingSubscriptions | None = None) -> dict[str, Rpc]:
    """The Dapr gRPC methods this block serves, by RPC name, bound to ``service``."""
    table: dict[str, Rpc] = {
        "PublishEvent": lambda r: publish_event(service, r),
        "BulkPublishEvent": lambda r: bulk_publish_event(service, r),
        "BulkPublishEventAlpha1": lambda r: bulk_publish_event(service, r),
    }
    if streams is not None:
        table["SubscribeTopicEventsAlpha1"] = StreamRpc(
            lambda requests: subscribe_topic_events(streams, requests)
        )
    return table
