"""Delivery to a gRPC app (``--app-protocol grpc``): ``ListTopicSubscriptions`` at start,
``OnTopicEvent`` per event, over one channel, with the API token and trace context in the
call metadata — against the plain grpc.aio test app of ``tests/apps``, in process."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.proto.runtime.v1 import appcallback_pb2_grpc
from pubsub_helpers import retrying

from servers import free_port
from tandem.blocks.errors import DaprError
from tandem.blocks.health import Health
from tandem.blocks.metadata import MetadataService
from tandem.blocks.pubsub.memory import MemoryPubSub
from tandem.blocks.pubsub.service import PublishRequest, PubSubComponent, PubSubService
from tandem.ext_proc.blocks_wiring import Wiring, start_app

APP = Path(__file__).resolve().parents[2] / "apps" / "grpc_subscriber_app.py"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

SUBSCRIPTIONS = [
    {
        "pubsubname": "pubsub",
        "topic": "orders",
        "routes": {
            "rules": [{"match": 'event.type == "widget"', "path": "widgets"}],
            "default": "orders",
        },
        "deadLetterTopic": "dead",
    },
    {"pubsubname": "pubsub", "topic": "dead"},
]


def _load_app() -> Any:
    spec = importlib.util.spec_from_file_location("grpc_subscriber_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Records:
    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        # The app may be appending right now: a last line without its newline is not whole.
        lines = self.path.read_text().split("\n")[:-1]
        return [json.loads(line) for line in lines if line]

    async def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := [r for r in self.all() if pred(r)]) < count:
            assert time.monotonic() < deadline, f"{len(found)} of {count} deliveries recorded"
            await asyncio.sleep(0.01)  # polling the app's record file, with a deadline
        return found


async def _until_ready(health: Health, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            health.check()
            return
        except DaprError:
            assert time.monotonic() < deadline, "the sidecar never became ready"
        await asyncio.sleep(0.01)  # polling a readiness flag, with a deadline


@pytest.fixture
async def grpc_app(tmp_path, monkeypatch) -> AsyncIterator[tuple[Records, PubSubService, Any]]:
    monkeypatch.setenv("APP_API_TOKEN", "tok")
    port = free_port()
    records = Records(tmp_path / "records.jsonl")
    service = PubSubService(
        [PubSubComponent("pubsub", MemoryPubSub(group="app"), "pubsub.in-memory")], "app"
    )
    health, metadata = Health("app"), MetadataService("app")
    health.mark_ready("components")
    stop = start_app(
        Wiring(pubsub=service),
        app_id="app",
        port=port,
        protocol="grpc",
        health=health,
        metadata=metadata,
        resiliencies=retrying(),
    )
    server = grpc.aio.server()
    app = _load_app().App(str(records.path), SUBSCRIPTIONS)
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(app, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await _until_ready(health)
    yield records, service, metadata
    await stop()
    await server.stop(0)
    await service.close()


async def _publish(service: PubSubService, data: dict[str, Any], **md: str) -> None:
    body = json.dumps(data).encode()
    await service.publish(
        PublishRequest(
            "pubsub", "orders", body, "application/json", metadata=md, traceparent=TRACEPARENT
        )
    )


async def test_grpc_app_subscriptions_come_from_list_topic_subscriptions(grpc_app):
    _, _, metadata = grpc_app
    subs = {s.topic: s for s in metadata.subscriptions}
    assert subs["orders"].type == "PROGRAMMATIC"
    assert subs["orders"].rules == (('event.type == "widget"', "widgets"), ("", "orders"))
    assert subs["orders"].dead_letter_topic == "dead"


async def test_grpc_app_gets_on_topic_event_with_route_token_and_trace_context(grpc_app):
    records, service, _ = grpc_app
    await _publish(service, {"tag": "a"}, **{"cloudevent.type": "widget"})
    await _publish(service, {"tag": "b"})
    [widget] = await records.wait_for(lambda r: r["data"] == {"tag": "a"})
    [order] = await records.wait_for(lambda r: r["data"] == {"tag": "b"})
    assert (widget["path"], order["path"]) == ("widgets", "orders")
    assert (order["topic"], order["pubsub"], order["type"]) == (
        "orders",
        "pubsub",
        "com.dapr.event.sent",
    )
    assert order["content_type"] == "application/json"
    md = order["metadata"]
    assert (md["dapr-api-token"], md["pubsubname"], md["dapr-app-id"]) == ("tok", "pubsub", "app")
    # the app's span is a child of the publisher's: same trace id, new span id
    assert md["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
    assert md["traceparent"] != TRACEPARENT
    assert order["extensions"]["traceparent"] == TRACEPARENT


async def test_grpc_app_error_is_retried_and_unimplemented_is_dead_lettered(grpc_app):
    records, service, _ = grpc_app
    await _publish(service, {"tag": "flaky", "answers": ["ERROR", "RETRY", "SUCCESS"]})
    tries = await records.wait_for(lambda r: r["data"].get("tag") == "flaky", count=3)
    assert [t["answer"] for t in tries] == ["ERROR", "RETRY", "SUCCESS"]
    await _publish(service, {"tag": "gone", "answers": ["UNIMPLEMENTED"]})
    [dead] = await records.wait_for(
        lambda r: r["topic"] == "dead" and r["data"].get("tag") == "gone"
    )
    [original] = [r for r in records.all() if r["topic"] == "orders" and r["data"]["tag"] == "gone"]
    assert dead["id"] == original["id"]  # the original event, dead-lettered as it was


BULK_SUBSCRIPTIONS = [
    {
        "pubsubname": "pubsub",
        "topic": "bulky",
        "routes": {"default": "bulky"},
        "deadLetterTopic": "dead",
        "bulkSubscribe": {"enabled": True, "maxMessagesCount": 4, "maxAwaitDurationMs": 100},
    },
    {"pubsubname": "pubsub", "topic": "dead"},
]


@pytest.fixture
async def bulk_app(tmp_path, monkeypatch, request) -> AsyncIterator[tuple[Records, PubSubService]]:
    """The gRPC app with a bulk subscription; ``request.param`` is its BULK_CALLBACK."""
    monkeypatch.setenv("BULK_CALLBACK", request.param)
    port = free_port()
    records = Records(tmp_path / "records.jsonl")
    service = PubSubService(
        [PubSubComponent("pubsub", MemoryPubSub(group="app"), "pubsub.in-memory")], "app"
    )
    health = Health("app")
    health.mark_ready("components")
    stop = start_app(
        Wiring(pubsub=service),
        app_id="app",
        port=port,
        protocol="grpc",
        health=health,
        metadata=MetadataService("app"),
        resiliencies=retrying(),
    )
    server = grpc.aio.server()
    _load_app().add_to_server(server, str(records.path), BULK_SUBSCRIPTIONS)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await _until_ready(health)
    yield records, service
    await stop()
    await server.stop(0)
    await service.close()


async def _publish_bulky(service: PubSubService, *events: dict[str, Any]) -> None:
    for data in events:
        body = json.dumps(data).encode()
        await service.publish(PublishRequest("pubsub", "bulky", body, "application/json"))


@pytest.mark.parametrize(
    ("bulk_app", "method"),
    [("bulk", "OnBulkTopicEvent"), ("alpha", "OnBulkTopicEventAlpha1")],
    indirect=["bulk_app"],
)
async def test_grpc_bulk_subscription_gets_batches_answered_entry_by_entry(bulk_app, method):
    records, service = bulk_app
    await _publish_bulky(
        service,
        {"n": 1},
        {"n": 2, "answers": ["RETRY", "SUCCESS"]},
        {"n": 3, "answers": ["DROP"]},
        {"n": 4},
    )
    [dead] = await records.wait_for(lambda r: r["topic"] == "dead")
    assert dead["data"]["n"] == 3 and "bulk" not in dead  # the dead-letter topic is not bulk
    got = await records.wait_for(lambda r: r["topic"] == "bulky", count=5)
    assert {g["bulk"]["method"] for g in got} == {method}
    assert max(g["bulk"]["count"] for g in got) > 1  # batched
    by_n: dict[int, list[str]] = {}
    for g in got:
        by_n.setdefault(g["data"]["n"], []).append(g["answer"])
    assert by_n == {1: ["SUCCESS"], 2: ["RETRY", "SUCCESS"], 3: ["DROP"], 4: ["SUCCESS"]}
    assert got[0]["metadata"]["dapr-app-id"] == "app"


@pytest.mark.parametrize("bulk_app", ["none"], indirect=True)
async def test_grpc_app_without_a_bulk_callback_gets_the_batch_dead_lettered(bulk_app):
    records, service = bulk_app
    await _publish_bulky(service, {"n": 1}, {"n": 2})
    dead = await records.wait_for(lambda r: r["topic"] == "dead", count=2)
    assert sorted(d["data"]["n"] for d in dead) == [1, 2]
    assert not [r for r in records.all() if r["topic"] == "bulky"]
