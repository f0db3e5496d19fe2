"""Pub/sub to a gRPC app end to end: `tandem run --app-protocol grpc` starts a plain grpc.aio
``AppCallback`` app (`tests/apps/grpc_subscriber_app.py`), reads its subscriptions with
``ListTopicSubscriptions`` and delivers with ``OnTopicEvent``; another sidecar publishes
over HTTP through the embedded broker. A ``bulkSubscribe`` subscription gets its events in
batches through ``OnBulkTopicEvent`` (issue 9), each entry answered on its own."""

from __future__ import annotations

import json
import sys
import uuid

import httpx
import pytest
from harness import APPS, start_sidecar
from pubsub_harness import Records, default_resources_with_retries

from tandem.cli.ports import free_port

TRACE_ID = "5bf92f3577b34da6a3ce929d0e0e4737"
SUBSCRIPTIONS = [
    {
        "pubsubname": "pubsub",
        "topic": "grpc-orders",
        "routes": {"rules": [{"match": "event.data.big", "path": "big"}], "default": "orders"},
        "deadLetterTopic": "grpc-dead",
    },
    {"pubsubname": "pubsub", "topic": "grpc-dead", "routes": {"default": "dead"}},
    {
        "pubsubname": "pubsub",
        "topic": "grpc-bulky",
        "routes": {"default": "bulky"},
        "deadLetterTopic": "grpc-dead",
        "bulkSubscribe": {"enabled": True, "maxMessagesCount": 10, "maxAwaitDurationMs": 300},
    },
]


@pytest.fixture(scope="module")
def records(tandem_home):
    return Records(tandem_home / "grpc-deliveries.jsonl")


@pytest.fixture(scope="module")
def mesh(tandem_home, records):
    port = free_port()
    command = [
        sys.executable,
        str(APPS / "grpc_subscriber_app.py"),
        str(port),
        str(records.path),
        json.dumps(SUBSCRIPTIONS),
    ]
    sub = start_sidecar(
        tandem_home,
        "grpc-sub",
        "--app-port",
        str(port),
        "--app-protocol",
        "grpc",
        "--resources-path",
        str(default_resources_with_retries(tandem_home)),
        command=command,
        env={"APP_API_TOKEN": "app-secret"},
    )
    pub = start_sidecar(tandem_home, "grpc-pub")
    yield pub, sub
    for s in (pub, sub):
        s.stop()


def _publish(sidecar, data, **headers) -> None:
    r = httpx.post(
        f"{sidecar.base}/v1.0/publish/pubsub/grpc-orders", json=data, headers=headers, timeout=10
    )
    assert r.status_code == 204, r.text


def _tagged(tag: str):
    return lambda r: isinstance(r["data"], dict) and r["data"].get("tag") == tag


def test_grpc_app_subscriptions_are_listed_by_its_sidecar(mesh):
    _, sub = mesh
    md = httpx.get(f"{sub.base}/v1.0/metadata", timeout=5).json()
    listed = {s["topic"]: s for s in md["subscriptions"]}
    assert listed["grpc-orders"]["type"] == "PROGRAMMATIC"
    assert listed["grpc-orders"]["deadLetterTopic"] == "grpc-dead"
    assert md["appConnectionProperties"]["protocol"] == "grpc"


def test_event_published_over_http_reaches_the_grpc_app_on_its_route(mesh, records):
    pub, _ = mesh
    tag = uuid.uuid4().hex
    _publish(pub, {"tag": tag}, traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01")
    _publish(pub, {"tag": tag + "-big", "big": True})
    [got] = records.wait_for(_tagged(tag))
    [big] = records.wait_for(_tagged(tag + "-big"))
    assert (got["path"], big["path"]) == ("orders", "big")
    assert (got["topic"], got["pubsub"], got["content_type"]) == (
        "grpc-orders",
        "pubsub",
        "application/json",
    )
    md = got["metadata"]
    assert md["dapr-api-token"] == "app-secret"
    assert md["traceparent"].split("-")[1] == TRACE_ID
    assert got["extensions"]["traceparent"].split("-")[1] == TRACE_ID


def test_grpc_app_errors_are_retried_and_a_drop_is_dead_lettered(mesh, records):
    pub, _ = mesh
    tag = uuid.uuid4().hex
    _publish(pub, {"tag": tag, "answers": ["ERROR", "SUCCESS"]})
    tries = records.wait_for(lambda r: _tagged(tag)(r) and r["path"] == "orders", count=2)
    assert [t["answer"] for t in tries] == ["ERROR", "SUCCESS"]
    dropped = uuid.uuid4().hex
    _publish(pub, {"tag": dropped, "answers": ["DROP"]})
    [letter] = records.wait_for(lambda r: _tagged(dropped)(r) and r["path"] == "dead")
    [original] = records.where(lambda r: _tagged(dropped)(r) and r["path"] == "orders")
    assert letter["id"] == original["id"]


def test_bulk_subscription_of_a_grpc_app_gets_batches_answered_entry_by_entry(mesh, records):
    pub, _ = mesh
    tag = uuid.uuid4().hex
    answers = {2: ["RETRY", "SUCCESS"], 5: ["DROP"]}
    entries = [
        {
            "entryId": str(n),
            "event": {"tag": tag, "n": n, "answers": answers.get(n, ["SUCCESS"])},
            "contentType": "application/json",
        }
        for n in range(8)
    ]
    r = httpx.post(
        f"{pub.base}/v1.0-alpha1/publish/bulk/pubsub/grpc-bulky", json=entries, timeout=10
    )
    assert r.status_code == 204, r.text
    [dead] = records.wait_for(lambda g: _tagged(tag)(g) and g["path"] == "dead")
    assert dead["data"]["n"] == 5
    got = records.wait_for(lambda g: _tagged(tag)(g) and g["path"] == "bulky", count=9)
    assert {g["bulk"]["method"] for g in got} == {"OnBulkTopicEvent"}
    assert max(g["bulk"]["count"] for g in got) > 1  # batched, not one by one
    by_n: dict[int, list[str]] = {}
    for g in got:
        by_n.setdefault(g["data"]["n"], []).append(g["answer"])
    assert by_n[2] == ["RETRY", "SUCCESS"]  # retried per the Resiliency policy
    assert by_n[5] == ["DROP"]
    assert all(by_n[n] == ["SUCCESS"] for n in (0, 1, 3, 4, 6, 7))
    assert got[0]["metadata"]["dapr-api-token"] == "app-secret"
