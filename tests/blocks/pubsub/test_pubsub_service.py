"""The publish service, the HTTP and gRPC front doors, and the subscriber core — over the
in-memory broker, with a scripted delivery target standing in for the app."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import grpc
import orjson
import pytest
from dapr.proto.runtime.v1 import pubsub_pb2
from pubsub_helpers import Recorder, retrying

from tandem.blocks.errors import DaprError
from tandem.blocks.pubsub import cloudevents
from tandem.blocks.pubsub.broker import Message, Outcome, PublishEntry, SubscribeOptions
from tandem.blocks.pubsub.delivery import Delivery, DeliveryResult, DeliveryStatus
from tandem.blocks.pubsub.memory import MemoryPubSub
from tandem.blocks.pubsub.scopes import TopicScopes
from tandem.blocks.pubsub.service import BulkEntry, PublishRequest, PubSubComponent, PubSubService
from tandem.blocks.pubsub.subscriber import Subscriber
from tandem.blocks.pubsub.subscriptions import SubscriptionType, TopicSubscription
from tandem.ext_proc import pubsub_grpc, pubsub_http
from tandem.ext_proc.api import ApiRequest
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.router import Router
from tandem.resources import RoutingRule


class FailingBroker(MemoryPubSub):
    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        raise ConnectionError("broker down")

    async def bulk_publish(self, topic: str, entries: Sequence[PublishEntry]) -> list[str]:
        raise ConnectionError("broker down")


def make_service(**scopes: str) -> tuple[PubSubService, MemoryPubSub]:
    broker = MemoryPubSub(group="app", redeliver_delay=0.01)
    comps = [
        PubSubComponent("pubsub", broker, "pubsub.in-memory", TopicScopes.from_metadata(scopes)),
        PubSubComponent("down", FailingBroker(group="app"), "pubsub.in-memory"),
    ]
    return PubSubService(comps, app_id="app"), broker


async def listen(broker: MemoryPubSub, topic: str) -> Recorder:
    rec = Recorder()
    await broker.subscribe(topic, rec, SubscribeOptions())
    return rec


@pytest.mark.parametrize(
    ("pubsub", "topic", "code", "status"),
    [
        ("", "t", "ERR_PUBSUB_EMPTY", 404),
        ("nope", "t", "ERR_PUBSUB_NOT_FOUND", 404),
        ("pubsub", "", "ERR_TOPIC_NAME_EMPTY", 404),
        ("pubsub", "secret", "ERR_PUBSUB_FORBIDDEN", 403),
        ("down", "t", "ERR_PUBSUB_PUBLISH_MESSAGE", 500),
    ],
)
async def test_publish_errors_carry_dapr_codes(pubsub, topic, code, status):
    service, _ = make_service(publishingScopes="app=t")
    with pytest.raises(DaprError) as err:
        await service.publish(PublishRequest(pubsub, topic, b"x"))
    assert (err.value.error_code, err.value.http_status) == (code, status)


async def test_publish_without_any_pubsub_is_not_configured():
    with pytest.raises(DaprError) as err:
        await PubSubService([], app_id="a").publish(PublishRequest("pubsub", "t", b"x"))
    assert (err.value.error_code, err.value.http_status) == ("ERR_PUBSUB_NOT_CONFIGURED", 400)


async def test_published_event_is_a_cloudevent_from_this_app_and_raw_payload_is_not():
    service, broker = make_service()
    rec = await listen(broker, "t")
    await service.publish(PublishRequest("pubsub", "t", b'{"a":1}', "application/json"))
    await service.publish(PublishRequest("pubsub", "t", b"raw", metadata={"rawPayload": "true"}))
    first, second = await rec.wait_for(2)
    event = orjson.loads(first.data)
    assert (event["source"], event["data"], event["topic"]) == ("app", {"a": 1}, "t")
    assert event["traceparent"].startswith("00-")  # a trace is started when none is given
    assert second.data == b"raw"


async def test_bulk_publish_checks_entry_ids_and_reports_broker_failures_per_entry():
    service, broker = make_service()
    with pytest.raises(DaprError) as err:
        await service.bulk_publish("pubsub", "t", [BulkEntry("1", b"a"), BulkEntry("1", b"b")])
    assert (err.value.error_code, err.value.http_status) == ("ERR_PUBSUB_EVENTS_SER", 400)
    failed = await service.bulk_publish("down", "t", [BulkEntry("1", b"a"), BulkEntry("2", b"b")])
    assert [f.entry_id for f in failed] == ["1", "2"]
    rec = await listen(broker, "t")
    assert (
        await service.bulk_publish("pubsub", "t", [BulkEntry("1", b"a"), BulkEntry("2", b"b")])
        == []
    )
    await rec.wait_for(2)


# -- HTTP and gRPC doors -------------------------------------------------------------------


def http_api(service: PubSubService) -> Dispatcher:
    router = Router()
    pubsub_http.register(router, service)
    return Dispatcher(router)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1.0/publish/pubsub/orders", 204, None),
        ("/v1.0/publish/pubsub/a/b/c", 204, None),  # topics may contain slashes
        ("/v1.0/publish/nope/orders", 404, "ERR_PUBSUB_NOT_FOUND"),
        ("/v1.0/publish/pubsub", 404, "ERR_TOPIC_NAME_EMPTY"),
        ("/v1.0/publish/pubsub/", 404, "ERR_TOPIC_NAME_EMPTY"),
        ("/v1.0/publish//orders", 404, "ERR_PUBSUB_EMPTY"),
        (
            "/v1.0/publish/pubsub/orders?metadata.rawPayload=maybe",
            400,
            "ERR_PUBSUB_REQUEST_METADATA",
        ),
        ("/v1.0/publish/pubsub/secret", 403, "ERR_PUBSUB_FORBIDDEN"),
    ],
)
async def test_http_publish_answers_like_dapr(path, status, code):
    service, _ = make_service(publishingScopes="app=orders,a/b/c")
    p, _, q = path.partition("?")
    resp = await http_api(service)(ApiRequest("POST", p, q, body=b"x"))
    assert resp.status == status
    if code:
        assert orjson.loads(resp.body)["errorCode"] == code


async def test_http_cloudevent_body_that_is_not_json_is_a_cloud_events_error():
    service, _ = make_service()
    req = ApiRequest(
        "POST",
        "/v1.0/publish/pubsub/t",
        headers={"content-type": "application/cloudevents+json"},
        body=b"{",
    )
    resp = await http_api(service)(req)
    assert (resp.status, orjson.loads(resp.body)["errorCode"]) == (
        500,
        "ERR_PUBSUB_CLOUD_EVENTS_SER",
    )


async def test_http_bulk_publish_reports_failed_entries_with_500():
    service, broker = make_service()
    rec = await listen(broker, "t")
    body = orjson.dumps(
        [
            {"entryId": "1", "event": {"a": 1}, "contentType": "application/json"},
            {"entryId": "2", "event": "text", "contentType": "text/plain"},
        ]
    )
    api = http_api(service)
    ok = await api(ApiRequest("POST", "/v1.0-alpha1/publish/bulk/pubsub/t", body=body))
    assert ok.status == 204
    first, second = await rec.wait_for(2)
    assert orjson.loads(first.data)["data"] == {"a": 1}
    assert orjson.loads(second.data)["data"] == "text"
    bad = await api(ApiRequest("PUT", "/v1.0/publish/bulk/down/t", body=body))
    assert bad.status == 500
    answer = orjson.loads(bad.body)
    assert answer["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE"
    assert [f["entryId"] for f in answer["failedEntries"]] == ["1", "2"]
    malformed = await api(ApiRequest("POST", "/v1.0/publish/bulk/pubsub/t", body=b"{}"))
    assert (malformed.status, orjson.loads(malformed.body)["errorCode"]) == (
        400,
        "ERR_PUBSUB_EVENTS_SER",
    )


async def test_grpc_publish_and_bulk_publish():
    service, broker = make_service()
    rec = await listen(broker, "t")
    rpcs = pubsub_grpc.rpcs(service)
    await rpcs["PublishEvent"](
        pubsub_pb2.PublishEventRequest(
            pubsub_name="pubsub", topic="t", data=b"1", data_content_type="application/json"
        )
    )
    resp = await rpcs["BulkPublishEventAlpha1"](
        pubsub_pb2.BulkPublishRequest(
            pubsub_name="down",
            topic="t",
            entries=[
                pubsub_pb2.BulkPublishRequestEntry(
                    entry_id="e", event=b"x", content_type="text/plain"
                )
            ],
        )
    )
    assert [f.entry_id for f in resp.failedEntries] == ["e"]
    [msg] = await rec.wait_for(1)
    assert orjson.loads(msg.data)["data"] == 1
    with pytest.raises(DaprError) as err:
        await rpcs["PublishEvent"](pubsub_pb2.PublishEventRequest(pubsub_name="nope", topic="t"))
    assert err.value.grpc_status is grpc.StatusCode.INVALID_ARGUMENT


# -- subscriber core -----------------------------------------------------------------------


class ScriptedTarget:
    """Answers deliveries from a script (the last answer repeats) and records them."""

    def __init__(self, *answers: DeliveryStatus) -> None:
        self.answers = list(answers) or [DeliveryStatus.SUCCESS]
        self.deliveries: list[Delivery] = []
        self.changed = asyncio.Event()

    async def deliver(self, delivery: Delivery, timeout: float | None) -> DeliveryResult:
        self.deliveries.append(delivery)
        self.changed.set()
        n = min(len(self.deliveries), len(self.answers)) - 1
        return DeliveryResult(
            self.answers[n], 500 if self.answers[n] is DeliveryStatus.RETRY else 200
        )


def sub(topic: str, *rules: RoutingRule, dlq: str | None = None, **md: str) -> TopicSubscription:
    return TopicSubscription(
        "pubsub",
        topic,
        rules or (RoutingRule("", f"/{topic}"),),
        SubscriptionType.PROGRAMMATIC,
        dead_letter_topic=dlq,
        metadata=md,
    )


FAST = retrying()


async def test_failing_delivery_is_retried_then_dead_lettered_as_the_original_message():
    service, broker = make_service()
    target = ScriptedTarget(DeliveryStatus.RETRY)
    subscriber = Subscriber(service, target, resiliencies=FAST)
    await subscriber.subscribe_all([sub("orders", dlq="dead")])
    dead = await listen(broker, "dead")
    await service.publish(PublishRequest("pubsub", "orders", b"x"))
    [letter] = await dead.wait_for(1)
    assert len(target.deliveries) == 6
    assert orjson.loads(letter.data)["topic"] == "orders"
    await subscriber.stop()


async def test_without_a_retry_policy_a_failing_delivery_is_dead_lettered_at_once():
    service, broker = make_service()
    target = ScriptedTarget(DeliveryStatus.RETRY)
    subscriber = Subscriber(service, target)
    await subscriber.subscribe_all([sub("orders", dlq="dead")])
    dead = await listen(broker, "dead")
    await service.publish(PublishRequest("pubsub", "orders", b"x"))
    [letter] = await dead.wait_for(1)
    assert len(target.deliveries) == 1
    assert orjson.loads(letter.data)["topic"] == "orders"
    await subscriber.stop()


async def test_without_retry_policy_or_dead_letter_topic_the_broker_redelivers():
    service, _ = make_service()
    subscriber = Subscriber(service, ScriptedTarget(DeliveryStatus.RETRY))
    active = subscriber._prepare(sub("orders"))
    assert active is not None
    data = cloudevents.encode(
        cloudevents.envelope(
            b"x", content_type="", topic="orders", pubsub_name="pubsub", source="a"
        )
    )
    assert await subscriber.handle(active, Message("orders", data)) is Outcome.RETRY


async def test_expired_event_is_not_delivered_and_goes_to_the_dead_letter_topic():
    service, broker = make_service()
    target = ScriptedTarget()
    subscriber = Subscriber(service, target, resiliencies=FAST)
    await subscriber.subscribe_all([sub("orders", dlq="dead")])
    dead = await listen(broker, "dead")
    past = datetime.now(UTC) - timedelta(seconds=5)
    event = cloudevents.envelope(
        b"x",
        content_type="",
        topic="orders",
        pubsub_name="pubsub",
        source="a",
        metadata={"ttlInSeconds": "1"},
        now=past,
    )
    await broker.publish("orders", cloudevents.encode(event), {})
    await dead.wait_for(1)
    assert target.deliveries == []
    await subscriber.stop()


async def test_event_matching_no_rule_is_dropped_without_delivery():
    service, broker = make_service()
    target = ScriptedTarget()
    subscriber = Subscriber(service, target, resiliencies=FAST)
    await subscriber.subscribe_all([sub("orders", RoutingRule('event.type == "x"', "/x"))])
    await service.publish(PublishRequest("pubsub", "orders", b"ignored"))
    await service.publish(
        PublishRequest(
            "pubsub", "orders", b'{"type":"x","id":"1"}', cloudevents.CLOUDEVENT_CONTENT_TYPE
        )
    )
    await asyncio.wait_for(target.changed.wait(), 5)
    assert [d.path for d in target.deliveries] == ["/x"]
    await subscriber.stop()


async def test_raw_subscription_receives_a_synthetic_event_with_the_bytes():
    service, broker = make_service()
    target = ScriptedTarget()
    subscriber = Subscriber(service, target, resiliencies=FAST)
    await subscriber.subscribe_all([sub("orders", rawPayload="true")])
    await service.publish(
        PublishRequest("pubsub", "orders", b"\x01\x02", metadata={"rawPayload": "true"})
    )
    await asyncio.wait_for(target.changed.wait(), 5)
    [d] = target.deliveries
    assert d.event["datacontenttype"] == "application/octet-stream"
    assert orjson.loads(d.body)["data_base64"] == "AQI="
    await subscriber.stop()


async def test_subscriptions_to_unknown_pubsubs_or_unscoped_topics_are_skipped():
    service, _ = make_service(subscriptionScopes="app=allowed")
    subscriber = Subscriber(service, ScriptedTarget(), resiliencies=FAST)
    unknown = TopicSubscription("nope", "t", (RoutingRule("", "/t"),), SubscriptionType.DECLARATIVE)
    started = await subscriber.subscribe_all([unknown, sub("forbidden"), sub("allowed")])
    assert [s.topic for s in started] == ["allowed"]
    await subscriber.stop()


async def test_stopping_hands_a_message_waiting_for_retry_back_to_the_broker():
    service, broker = make_service()
    target = ScriptedTarget(DeliveryStatus.RETRY)
    subscriber = Subscriber(service, target, resiliencies=retrying(every=60))
    await subscriber.subscribe_all([sub("orders")])
    await service.publish(PublishRequest("pubsub", "orders", b"x"))
    await asyncio.wait_for(target.changed.wait(), 5)
    await asyncio.wait_for(subscriber.stop(grace=5), 2)  # does not sit out the 60 s back-off
    # Given back unacknowledged: a new consumer of the group gets it again.
    again = await listen(broker, "orders")
    await again.wait_for(1)


async def test_handle_outcome_for_drop_and_not_found_without_dead_letter_is_drop():
    service, _ = make_service()
    for answer in (DeliveryStatus.DROP, DeliveryStatus.NOT_FOUND):
        subscriber = Subscriber(service, ScriptedTarget(answer), resiliencies=FAST)
        active = subscriber._prepare(sub("orders"))
        assert active is not None
        msg_data = cloudevents.encode(
            cloudevents.envelope(
                b"x", content_type="", topic="orders", pubsub_name="pubsub", source="a"
            )
        )
        assert await subscriber.handle(active, Message("orders", msg_data)) is Outcome.DROP
