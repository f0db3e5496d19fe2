"""Events as Dapr's gRPC messages carry them, and delivery to a gRPC app.

:func:`topic_event_request` turns a routed CloudEvent into a ``TopicEventRequest`` (used by
``AppCallback.OnTopicEvent`` and by streaming subscriptions): ``data`` is the event's data
as bytes (``data_base64`` decoded, a string as UTF-8, anything else as JSON) and every
CloudEvent attribute without a field of its own (``time``, ``traceparent``, ``topic``,
custom extensions, …) goes to ``extensions``.

:class:`GrpcDelivery` calls ``OnTopicEvent`` and reads the answer as Dapr does:
SUCCESS / RETRY / DROP from the response, ``UNIMPLEMENTED`` → drop, any other error → retry.

:class:`GrpcBulkSender` delivers a bulk subscription's batch with ``AppCallback.
OnBulkTopicEvent``, or ``AppCallbackAlpha.OnBulkTopicEventAlpha1`` when the app answers
the former ``UNIMPLEMENTED`` (as Dapr falls back; it does not fall back to one
``OnTopicEvent`` per event). Each entry gets the status the app gave it (none: RETRY);
neither method implemented → every entry as a missing route (dead letter, else dropped);
any other error → every entry RETRY.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import orjson
from dapr.proto.runtime.v1 import appcallback_pb2
from google.protobuf import struct_pb2

from tandem.blocks.app_grpc_channel import AppGrpcChannel
from tandem.blocks.pubsub.delivery import (
    BULK_EVENT_TYPE,
    BulkEntry,
    Delivery,
    DeliveryResult,
    DeliveryStatus,
)
from tandem.blocks.pubsub.subscriptions import SubscriptionType, TopicSubscription
from tandem.resources import BulkSubscribe, RoutingRule

log = logging.getLogger("tandem.pubsub")

_OWN_FIELDS = frozenset(
    {"id", "source", "type", "specversion", "datacontenttype", "data", "data_base64"}
)
_STATUS = {
    appcallback_pb2.TopicEventResponse.SUCCESS: DeliveryStatus.SUCCESS,
    appcallback_pb2.TopicEventResponse.RETRY: DeliveryStatus.RETRY,
    appcallback_pb2.TopicEventResponse.DROP: DeliveryStatus.DROP,
}


def event_data(event: Mapping[str, Any]) -> bytes:
    if "data_base64" in event:
        try:
            return base64.b64decode(str(event["data_base64"]), validate=False)
        except (binascii.Error, ValueError):
            return str(event["data_base64"]).encode()
    data = event.get("data")
    if data is None:
        return b""
    if isinstance(data, str):
        return data.encode()
    return orjson.dumps(data)


def _extensions(event: Mapping[str, Any]) -> struct_pb2.Struct:
    extensions = struct_pb2.Struct()
    for key, value in event.items():
        if key in _OWN_FIELDS:
            continue
        try:
            extensions.update({key: value})
        except (ValueError, TypeError):
            extensions.update({key: str(value)})
    return extensions


def topic_event_request(delivery: Delivery) -> appcallback_pb2.TopicEventRequest:
    event = delivery.event
    extensions = _extensions(event)
    return appcallback_pb2.TopicEventRequest(
        id=str(event.get("id", "")),
        source=str(event.get("source", "")),
        type=str(event.get("type", "")),
        spec_version=str(event.get("specversion", "")),
        data_content_type=str(event.get("datacontenttype", "")),
        data=event_data(event),
        topic=delivery.topic,
        pubsub_name=delivery.pubsub_name,
        path=delivery.path,
        extensions=extensions,
    )


def status_of(answer: int) -> DeliveryResult:
    """A ``TopicEventResponse.status`` as Dapr reads it (an unknown value is retried)."""
    status = _STATUS.get(answer)  # type: ignore[call-overload]
    if status is None:
        return DeliveryResult(DeliveryStatus.RETRY, None, f"unknown status {answer}")
    detail = {DeliveryStatus.DROP: "the app answered DROP", DeliveryStatus.RETRY: "RETRY"}
    return DeliveryResult(status, None, detail.get(status, ""))


def call_metadata(d: Delivery) -> dict[str, str]:
    md = dict(d.metadata)
    md["pubsubname"] = d.pubsub_name
    md["traceparent"] = d.app_traceparent()
    if d.tracestate:
        md["tracestate"] = d.tracestate
    return md


def bulk_request(path: str, entries: Sequence[BulkEntry]) -> appcallback_pb2.TopicEventBulkRequest:
    """One batch as a ``TopicEventBulkRequest``: each entry's CloudEvent in ``cloud_event``,
    its attributes split as for ``OnTopicEvent``."""
    first = entries[0].delivery
    return appcallback_pb2.TopicEventBulkRequest(
        id=str(uuid.uuid4()),
        type=BULK_EVENT_TYPE,
        topic=first.topic,
        pubsub_name=first.pubsub_name,
        path=path,
        entries=[
            appcallback_pb2.TopicEventBulkRequestEntry(
                entry_id=e.entry_id,
                cloud_event=appcallback_pb2.TopicEventCERequest(
                    id=str(e.delivery.event.get("id", "")),
                    source=str(e.delivery.event.get("source", "")),
                    type=str(e.delivery.event.get("type", "")),
                    spec_version=str(e.delivery.event.get("specversion", "")),
                    data_content_type=str(e.delivery.event.get("datacontenttype", "")),
                    data=event_data(e.delivery.event),
                    extensions=_extensions(e.delivery.event),
                ),
                content_type=e.delivery.content_type,
                metadata=dict(e.delivery.metadata),
            )
            for e in entries
        ],
    )


def classify_bulk_response(
    resp: appcallback_pb2.TopicEventBulkResponse, entry_ids: Sequence[str]
) -> dict[str, DeliveryResult]:
    answered = {s.entry_id: s.status for s in resp.statuses}
    missing = DeliveryResult(
        DeliveryStatus.RETRY, None, "the app's bulk answer has no status for it"
    )
    return {i: status_of(answered[i]) if i in answered else missing for i in entry_ids}


class GrpcBulkSender:
    """Sends one batch to a gRPC app (see the module docstring for the answers)."""

    def __init__(self, channel: AppGrpcChannel) -> None:
        self._channel = channel
        self._alpha_only = False  # the app answered OnBulkTopicEvent UNIMPLEMENTED once

    async def send(
        self, path: str, entries: Sequence[BulkEntry], timeout: float | None
    ) -> dict[str, DeliveryResult]:
        ids = [e.entry_id for e in entries]
        request = bulk_request(path, entries)
        md = call_metadata(entries[0].delivery)
        try:
            resp = await self._call(request, md, timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                gone = DeliveryResult(
                    DeliveryStatus.NOT_FOUND,
                    None,
                    "the app implements neither OnBulkTopicEvent nor OnBulkTopicEventAlpha1",
                )
                return dict.fromkeys(ids, gone)
            detail = f"OnBulkTopicEvent: {exc.code().name}: {exc.details()}"
            return dict.fromkeys(ids, DeliveryResult(DeliveryStatus.RETRY, None, detail))
        except (TimeoutError, OSError) as exc:
            failed = DeliveryResult(DeliveryStatus.RETRY, None, f"OnBulkTopicEvent: {exc!r}")
            return dict.fromkeys(ids, failed)
        return classify_bulk_response(resp, ids)

    async def _call(
        self,
        request: appcallback_pb2.TopicEventBulkRequest,
        md: Mapping[str, str],
        timeout: float | None,
    ) -> appcallback_pb2.TopicEventBulkResponse:
        if not self._alpha_only:
            try:
                return await self._channel.on_bulk_topic_event(request, md, timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
            self._alpha_only = True
            log.info("the app has no OnBulkTopicEvent; using AppCallbackAlpha's")
        return await self._channel.on_bulk_topic_event(request, md, timeout, alpha=True)


class GrpcDelivery:
    def __init__(self, channel: AppGrpcChannel) -> None:
        self._channel = channel

    @property
    def channel(self) -> AppGrpcChannel:
        return self._channel

    async def deliver(self, delivery: Delivery, timeout: float | None) -> DeliveryResult:
        try:
            resp = await self._channel.on_topic_event(
                topic_event_request(delivery), call_metadata(delivery), timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return DeliveryResult(DeliveryStatus.NOT_FOUND, None, "OnTopicEvent unimplemented")
            return DeliveryResult(
                DeliveryStatus.RETRY, None, f"OnTopicEvent: {exc.code().name}: {exc.details()}"
            )
        except (TimeoutError, OSError) as exc:
            return DeliveryResult(DeliveryStatus.RETRY, None, f"OnTopicEvent: {exc!r}")
        return status_of(resp.status)


def from_proto(sub: appcallback_pb2.TopicSubscription) -> TopicSubscription:
    """One entry of ``ListTopicSubscriptions``; no routes at all means every event, path ""."""
    rules = [RoutingRule(r.match, r.path) for r in sub.routes.rules]
    if sub.routes.default or not rules:
        rules.append(RoutingRule("", sub.routes.default))
    bulk = sub.bulk_subscribe
    return TopicSubscription(
        pubsub_name=sub.pubsub_name,
        topic=sub.topic,
        rules=tuple(rules),
        type=SubscriptionType.PROGRAMMATIC,
        dead_letter_topic=sub.dead_letter_topic or None,
        metadata=dict(sub.metadata),
        bulk=BulkSubscribe(
            enabled=bulk.enabled,
            max_messages_count=bulk.max_messages_count or None,
            max_await_duration_ms=bulk.max_await_duration_ms or None,
        ),
    )


async def fetch_grpc_subscriptions(channel: AppGrpcChannel) -> list[TopicSubscription]:
    """The app's ``ListTopicSubscriptions`` answer; UNIMPLEMENTED means none."""
    delay = 0.1
    for attempt in range(1, 6):
        try:
            resp = await channel.list_topic_subscriptions()
            break
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return []
            if attempt == 5:
                log.error("ListTopicSubscriptions failed, no programmatic subscriptions: %s", exc)
                return []
            await asyncio.sleep(delay)
            delay *= 2
    subs = []
    for item in resp.subscriptions:
        if not item.pubsub_name or not item.topic:
            log.warning("programmatic subscription skipped: pubsub_name and topic are required")
            continue
        subs.append(from_proto(item))
    return subs
