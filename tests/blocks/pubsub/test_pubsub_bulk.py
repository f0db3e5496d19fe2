"""Bulk subscribe delivery (dapr-api §3.6): batching, Dapr's bulk body, and the app's answer
per entry driving acknowledgement, retries and dead letters — over the in-memory broker,
with a scripted HTTP app channel standing in for the app."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, cast

import orjson
import pytest
from pubsub_helpers import Recorder, retrying

from tandem.blocks.app_channel import AppChannel, AppChannelError, AppResponse
from tandem.blocks.app_grpc_channel import AppGrpcChannel
from tandem.blocks.pubsub import bulk
from tandem.blocks.pubsub.broker import SubscribeOptions
from tandem.blocks.pubsub.delivery import Delivery, DeliveryStatus
from tandem.blocks.pubsub.grpc_delivery import GrpcDelivery
from tandem.blocks.pubsub.http_delivery import HttpDelivery
from tandem.blocks.pubsub.memory import MemoryPubSub
from tandem.blocks.pubsub.scopes import TopicScopes
from tandem.blocks.pubsub.service import PublishRequest, PubSubComponent, PubSubService
from tandem.blocks.pubsub.streaming import StreamTarget
from tandem.blocks.pubsub.subscriber import Subscriber
from tandem.blocks.pubsub.subscriptions import (
    SubscriptionType,
    TopicSubscription,
    parse_programmatic,
)
from tandem.resources import BulkSubscribe, RoutingRule

FAST = retrying()

Answer = Callable[[dict[str, Any], int], tuple[int, Any]]


def per_entry(decide: Callable[[dict[str, Any], int], str]) -> Answer:
    """An app answering 200 with a status for each entry: ``decide(event, seen_before)``."""
    seen: dict[str, int] = {}

    def answer(body: dict[str, Any], _n: int) -> tuple[int, Any]:
        statuses = []
        for e in body["entries"]:
            eid = e["event"]["id"]
            statuses.append(
                {"entryId": e["entryId"], "status": decide(e["event"], seen.get(eid, 0))}
            )
            seen[eid] = seen.get(eid, 0) + 1
        return 200, {"statuses": statuses}

    return answer


class FakeApp:
    """An app channel that records each bulk request and answers it with ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[str, Mapping[str, str], dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> AppResponse:
        parsed = orjson.loads(body)
        self.requests.append((path, dict(headers or {}), parsed))
        self.changed.set()
        status, reply = self.answer(parsed, len(self.requests))
        if isinstance(reply, Exception):
            raise reply
        raw = reply if isinstance(reply, bytes) else orjson.dumps(reply)
        return AppResponse(status, raw)

    @property
    def entries(self) -> list[dict[str, Any]]:
        return [e for _, _, body in self.requests for e in body["entries"]]

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0) -> None:
        async def reached() -> None:
            while not pred():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(reached(), timeout)


def make_service() -> tuple[PubSubService, MemoryPubSub]:
    broker = MemoryPubSub(group="app", redeliver_delay=0.01)
    comp = PubSubComponent("pubsub", broker, "pubsub.in-memory", TopicScopes.from_metadata({}))
    return PubSubService([comp], app_id="app"), broker


def bulk_sub(
    topic: str = "orders",
    *,
    count: int | None = 10,
    wait_ms: int | None = 50,
    dlq: str | None = "dead",
    rules: tuple[RoutingRule, ...] = (),
) -> TopicSubscription:
    return TopicSubscription(
        "pubsub",
        topic,
        rules or (RoutingRule("", f"/{topic}"),),
        SubscriptionType.PROGRAMMATIC,
        dead_letter_topic=dlq,
        bulk=BulkSubscribe(enabled=True, max_messages_count=count, max_await_duration_ms=wait_ms),
    )


async def start(
    app: FakeApp, subscription: TopicSubscription
) -> tuple[Subscriber, PubSubService, MemoryPubSub, Recorder]:
    service, broker = make_service()
    subscriber = Subscriber(service, HttpDelivery(cast(AppChannel, app)), resiliencies=FAST)
    assert await subscriber.subscribe_all([subscription]) == [subscription]
    dead = Recorder()
    await broker.subscribe("dead", dead, SubscribeOptions())
    return subscriber, service, broker, dead


async def publish(service: PubSubService, topic: str, data: dict[str, Any]) -> None:
    await service.publish(PublishRequest("pubsub", topic, orjson.dumps(data), "application/json"))


# -- the answer, entry by entry ------------------------------------------------------------


def test_answer_statuses_are_read_per_entry_and_a_missing_or_empty_one_is_retry():
    body = orjson.dumps(
        {
            "statuses": [
                {"entryId": "a", "status": "SUCCESS"},
                {"entryId": "b", "status": "drop"},
                {"entryId": "c", "status": "RETRY"},
                {"entryId": "d", "status": ""},
                {"entryId": "e", "status": "MAYBE"},
            ]
        }
    )
    got = bulk.classify_bulk(200, body, ["a", "b", "c", "d", "e", "f"])
    assert {k: v.status for k, v in got.items()} == {
        "a": DeliveryStatus.SUCCESS,
        "b": DeliveryStatus.DROP,
        "c": DeliveryStatus.RETRY,
        "d": DeliveryStatus.RETRY,
        "e": DeliveryStatus.RETRY,
        "f": DeliveryStatus.RETRY,
    }


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"not json", DeliveryStatus.RETRY),
        (200, b"", DeliveryStatus.RETRY),
        (204, b'{"status":"SUCCESS"}', DeliveryStatus.RETRY),  # a single-event answer
        (404, b"", DeliveryStatus.NOT_FOUND),
        (500, b'{"statuses":[{"entryId":"a","status":"SUCCESS"}]}', DeliveryStatus.RETRY),
        (429, b"", DeliveryStatus.RETRY),
    ],
)
def test_whole_batch_answers(status, body, expected):
    got = bulk.classify_bulk(status, body, ["a", "b"])
    assert {r.status for r in got.values()} == {expected}
    assert {r.http_status for r in got.values()} == {status}


def test_bulk_body_has_dapr_field_names_and_the_cloudevent_per_entry():
    d = Delivery(
        pubsub_name="pubsub",
        topic="orders",
        path="/orders",
        event={"id": "1"},
        body=b'{"id":"1","data":{"x":1}}',
        content_type="application/cloudevents+json",
        metadata={"k": "v"},
    )
    body = orjson.loads(
        bulk.encode_request("pubsub", "orders", [bulk.BulkEntry("e1", d)], request_id="r")
    )
    assert body == {
        "id": "r",
        "type": "com.dapr.event.sent.bulk",
        "topic": "orders",
        "pubsubname": "pubsub",
        "metadata": {},
        "entries": [
            {
                "entryId": "e1",
                "event": {"id": "1", "data": {"x": 1}},
                "contentType": "application/cloudevents+json",
                "metadata": {"k": "v"},
            }
        ],
    }


def test_settings_defaults_and_broker_concurrency_for_a_whole_batch():
    assert bulk.BulkSettings.of(bulk_sub(count=None, wait_ms=None)) == bulk.BulkSettings(100, 1.0)
    assert bulk.BulkSettings.of(bulk_sub(count=5, wait_ms=20)) == bulk.BulkSettings(5, 0.02)
    assert bulk.subscribe_metadata(bulk_sub(count=25)) == {"concurrency": "25"}
    own = TopicSubscription(
        "pubsub",
        "t",
        (RoutingRule("", "/t"),),
        SubscriptionType.DECLARATIVE,
        metadata={"concurrency": "3"},
        bulk=BulkSubscribe(enabled=True),
    )
    assert bulk.subscribe_metadata(own) == {"concurrency": "3"}


def test_programmatic_bulk_subscribe_is_parsed():
    [s], _ = parse_programmatic(
        [
            {
                "pubsubname": "p",
                "topic": "t",
                "route": "/t",
                "bulkSubscribe": {"enabled": True, "maxMessagesCount": 7, "maxAwaitDurationMs": 9},
            }
        ]
    )
    assert bulk.BulkSettings.of(s) == bulk.BulkSettings(7, 0.009)


# -- through the subscriber core -------------------------------------------------------------


async def test_events_arrive_in_batches_and_each_entry_answer_drives_its_own_outcome():
    def decide(event: dict[str, Any], seen: int) -> str:
        n = event["data"]["n"]
        if n == 3:
            return "RETRY" if seen == 0 else "SUCCESS"
        return "DROP" if n == 7 else "SUCCESS"

    app = FakeApp(per_entry(decide))
    subscriber, service, _, dead = await start(app, bulk_sub(count=10, wait_ms=50))
    for n in range(25):
        await publish(service, "orders", {"n": n})
    await dead.wait_for(1)

    def done() -> bool:
        return len(app.entries) >= 26

    await app.wait_for(done)
    assert all(1 <= len(body["entries"]) <= 10 for _, _, body in app.requests)
    assert any(len(body["entries"]) == 10 for _, _, body in app.requests)
    for path, headers, body in app.requests:
        assert path == "/orders"
        assert headers["content-type"] == "application/json"
        assert headers["pubsubname"] == "pubsub"
        assert (body["type"], body["topic"], body["pubsubname"]) == (
            "com.dapr.event.sent.bulk",
            "orders",
            "pubsub",
        )
        assert all(e["contentType"] == "application/cloudevents+json" for e in body["entries"])
    ns = sorted(e["event"]["data"]["n"] for e in app.entries)
    assert ns == sorted([*range(25), 3])  # every event once, the retried one twice
    [letter] = dead.messages
    assert orjson.loads(letter.data)["data"] == {"n": 7}
    await subscriber.stop()


async def test_a_partial_batch_is_sent_when_the_wait_runs_out():
    app = FakeApp(per_entry(lambda e, s: "SUCCESS"))
    subscriber, service, _, _ = await start(app, bulk_sub(count=100, wait_ms=30))
    for n in range(3):
        await publish(service, "orders", {"n": n})
    await app.wait_for(lambda: len(app.entries) == 3)
    assert [len(body["entries"]) for _, _, body in app.requests] == [3]
    await subscriber.stop()


async def test_non_2xx_answer_retries_the_whole_batch():
    def answer(body: dict[str, Any], n: int) -> tuple[int, Any]:
        if n == 1:
            return 503, b""
        return per_entry(lambda e, s: "SUCCESS")(body, n)

    app = FakeApp(answer)
    subscriber, service, _, dead = await start(app, bulk_sub(count=3, wait_ms=1000))
    for n in range(3):
        await publish(service, "orders", {"n": n})
    await app.wait_for(lambda: len(app.entries) == 6)
    first, *again = [
        sorted(e["event"]["data"]["n"] for e in b["entries"]) for _, _, b in app.requests
    ]
    assert first == [0, 1, 2]
    assert sorted(n for batch in again for n in batch) == [0, 1, 2]
    assert dead.messages == []
    await subscriber.stop()


async def test_unreachable_app_and_missing_statuses_are_retried():
    calls: list[int] = []

    def answer(body: dict[str, Any], n: int) -> tuple[int, Any]:
        calls.append(n)
        if n == 1:
            return 0, AppChannelError("connection refused")
        if n == 2:
            return 200, {"statuses": []}
        return per_entry(lambda e, s: "SUCCESS")(body, n)

    app = FakeApp(answer)
    subscriber, service, _, _ = await start(app, bulk_sub(count=2, wait_ms=1000))
    for n in range(2):
        await publish(service, "orders", {"n": n})
    await app.wait_for(lambda: len(app.entries) >= 6 and len(calls) >= 3)
    assert sorted(e["event"]["data"]["n"] for e in app.entries) == [0, 0, 0, 1, 1, 1]
    await subscriber.stop()


async def test_404_dead_letters_every_entry():
    app = FakeApp(lambda body, n: (404, b""))
    subscriber, service, _, dead = await start(app, bulk_sub(count=2, wait_ms=1000))
    for n in range(2):
        await publish(service, "orders", {"n": n})
    letters = await dead.wait_for(2)
    assert sorted(orjson.loads(m.data)["data"]["n"] for m in letters) == [0, 1]
    assert len(app.requests) == 1
    await subscriber.stop()


async def test_entries_are_grouped_by_route():
    rules = (RoutingRule("event.data.n % 2 == 0", "/even"), RoutingRule("", "/odd"))
    app = FakeApp(per_entry(lambda e, s: "SUCCESS"))
    subscriber, service, _, _ = await start(app, bulk_sub(count=4, wait_ms=1000, rules=rules))
    for n in range(4):
        await publish(service, "orders", {"n": n})
    await app.wait_for(lambda: len(app.entries) == 4)
    by_path = {p: sorted(e["event"]["data"]["n"] for e in b["entries"]) for p, _, b in app.requests}
    assert by_path == {"/even": [0, 2], "/odd": [1, 3]}
    await subscriber.stop()


async def test_stopping_gives_back_entries_waiting_for_their_batch():
    app = FakeApp(per_entry(lambda e, s: "SUCCESS"))
    subscriber, service, broker, _ = await start(app, bulk_sub(count=10, wait_ms=60_000))
    await publish(service, "orders", {"n": 1})
    await asyncio.wait_for(subscriber.stop(grace=0.05), 2)  # does not sit out the wait
    assert app.requests == []
    again = Recorder()
    await broker.subscribe("orders", again, SubscribeOptions())
    await again.wait_for(1)


def test_bulk_goes_to_http_and_grpc_apps_else_one_by_one():
    grpc_target = GrpcDelivery(AppGrpcChannel(1, app_id="app"))
    assert isinstance(bulk.batcher_for(grpc_target, bulk_sub()), bulk.BulkBatcher)
    assert bulk.batcher_for(StreamTarget(), bulk_sub()) is None
    http = HttpDelivery(cast(AppChannel, FakeApp(per_entry(lambda e, s: "SUCCESS"))))
    assert isinstance(bulk.batcher_for(http, bulk_sub()), bulk.BulkBatcher)
    plain = TopicSubscription(
        "pubsub", "t", (RoutingRule("", "/t"),), SubscriptionType.PROGRAMMATIC
    )
    assert bulk.batcher_for(http, plain) is None
