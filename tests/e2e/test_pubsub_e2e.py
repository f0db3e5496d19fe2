"""Pub/sub end to end over the embedded default broker: two `tandem run` sidecars on one
machine (a publisher without an app, a subscriber app) sharing $TANDEM_HOME/pubsub.db."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2
from harness import start_sidecar
from pubsub_harness import Records, start_subscriber, subscription

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"

SUBSCRIPTIONS = [
    subscription("pubsub", "orders", "/orders"),
    subscription("pubsub", "flaky", "/flaky", deadLetterTopic="poison"),
    subscription("pubsub", "droppy", "/droppy", deadLetterTopic="poison"),
    subscription("pubsub", "poison", "/poison"),
    {
        "pubsubname": "pubsub",
        "topic": "widgets",
        "routes": {
            "rules": [
                {"match": 'event.type == "widget"', "path": "/widgets"},
                {"match": "event.data.size > 10", "path": "/big"},
            ],
            "default": "/other",
        },
    },
]


@pytest.fixture(scope="module")
def records(tandem_home):
    return Records(tandem_home / "deliveries.jsonl")


@pytest.fixture(scope="module")
def mesh(tandem_home, records):
    sub = start_subscriber(
        tandem_home,
        "orders-app",
        SUBSCRIPTIONS,
        records,
    )
    pub = start_sidecar(tandem_home, "publisher")
    yield pub, sub
    for s in (pub, sub):
        s.stop()


def _tag() -> str:
    return uuid.uuid4().hex


def _publish(sidecar, topic, json=None, **kw) -> httpx.Response:
    return httpx.post(f"{sidecar.base}/v1.0/publish/pubsub/{topic}", json=json, timeout=10, **kw)


def _tagged(tag: str):
    def pred(r):
        data = r["body"].get("data") if isinstance(r["body"], dict) else None
        return isinstance(data, dict) and data.get("tag") == tag

    return pred


def test_event_published_on_one_sidecar_reaches_the_app_of_another(mesh, records):
    pub, _ = mesh
    tag = _tag()
    r = _publish(pub, "orders", {"order": 7, "tag": tag})
    assert r.status_code == 204, r.text
    [got] = records.wait_for(_tagged(tag))
    event = got["body"]
    assert got["path"] == "/orders"
    assert got["headers"]["content-type"] == "application/cloudevents+json"
    assert got["headers"]["pubsubname"] == "pubsub"
    assert event["data"] == {"order": 7, "tag": tag}
    assert event["datacontenttype"] == "application/json"
    assert event["source"] == "publisher"
    assert event["type"] == "com.dapr.event.sent"
    assert event["specversion"] == "1.0"
    assert (event["topic"], event["pubsubname"]) == ("orders", "pubsub")
    assert event["id"] and event["time"]


def test_trace_id_of_the_publish_reaches_the_subscriber(mesh, records):
    pub, _ = mesh
    tag = _tag()
    parent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    r = _publish(pub, "orders", {"tag": tag}, headers={"traceparent": parent})
    assert r.status_code == 204
    [got] = records.wait_for(_tagged(tag))
    assert got["body"]["traceparent"] == parent
    assert got["headers"]["traceparent"].split("-")[1] == TRACE_ID


def test_retry_answer_is_redelivered_by_the_component_until_success(mesh, records):
    """No Resiliency policy and no dead-letter topic: the broker redelivers, as in Dapr."""
    pub, _ = mesh
    tag = _tag()
    _publish(pub, "orders", {"tag": tag, "answers": ["RETRY", "RETRY", "SUCCESS"]})
    got = records.wait_for(_tagged(tag), count=3)
    assert [g["answer"] for g in got] == ["RETRY", "RETRY", "SUCCESS"]
    assert len({g["body"]["id"] for g in got}) == 1


def test_always_failing_event_ends_in_the_dead_letter_topic(mesh, records):
    pub, _ = mesh
    tag = _tag()
    _publish(pub, "flaky", {"tag": tag, "answers": ["HTTP500"]})
    [dead] = records.wait_for(lambda r: _tagged(tag)(r) and r["path"] == "/poison")
    attempts = records.where(lambda r: _tagged(tag)(r) and r["path"] == "/flaky")
    assert len(attempts) == 1  # Dapr's default: no retry without a Resiliency policy
    assert dead["body"]["topic"] == "flaky"  # the original event, as published


def test_drop_answer_sends_the_event_to_the_dead_letter_topic_once(mesh, records):
    pub, _ = mesh
    tag = _tag()
    _publish(pub, "droppy", {"tag": tag, "answers": ["DROP"]})
    records.wait_for(lambda r: _tagged(tag)(r) and r["path"] == "/poison")
    assert len(records.where(lambda r: _tagged(tag)(r) and r["path"] == "/droppy")) == 1


def test_routing_rules_choose_the_route_with_cel_over_the_event(mesh, records):
    pub, _ = mesh
    tags = {name: _tag() for name in ("widget", "big", "other")}
    ce = {"specversion": "1.0", "id": _tag(), "source": "s", "type": "widget"}
    ce_body = {**ce, "data": {"tag": tags["widget"]}, "datacontenttype": "application/json"}
    r = _publish(pub, "widgets", ce_body, headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 204
    _publish(pub, "widgets", {"tag": tags["big"], "size": 11})
    _publish(pub, "widgets", {"tag": tags["other"], "size": 1})
    for route, tag in (
        ("/widgets", tags["widget"]),
        ("/big", tags["big"]),
        ("/other", tags["other"]),
    ):
        [got] = records.wait_for(_tagged(tag))
        assert got["path"] == route


def test_bulk_publish_delivers_every_entry(mesh, records):
    pub, _ = mesh
    tags = [_tag() for _ in range(3)]
    entries = [
        {"entryId": str(i), "event": {"tag": t}, "contentType": "application/json"}
        for i, t in enumerate(tags)
    ]
    r = httpx.post(f"{pub.base}/v1.0-alpha1/publish/bulk/pubsub/orders", json=entries, timeout=10)
    assert r.status_code == 204, r.text
    for t in tags:
        records.wait_for(_tagged(t))


def test_grpc_publish_event_carries_the_trace_id_from_grpc_metadata(mesh, records):
    pub, _ = mesh
    tag = _tag()
    parent = f"00-{TRACE_ID}-1111111111111111-01"
    with grpc.insecure_channel(f"127.0.0.1:{pub.grpc_port}") as channel:
        dapr_pb2_grpc.DaprStub(channel).PublishEvent(
            pubsub_pb2.PublishEventRequest(
                pubsub_name="pubsub",
                topic="orders",
                data=f'{{"tag": "{tag}"}}'.encode(),
                data_content_type="application/json",
            ),
            metadata=[("traceparent", parent)],
            timeout=10,
        )
    [got] = records.wait_for(_tagged(tag))
    assert got["headers"]["traceparent"].split("-")[1] == TRACE_ID


def test_publish_errors_use_dapr_codes(mesh):
    pub, _ = mesh
    r = httpx.post(f"{pub.base}/v1.0/publish/nope/orders", content=b"x", timeout=10)
    assert (r.status_code, r.json()["errorCode"]) == (404, "ERR_PUBSUB_NOT_FOUND")
    r = httpx.post(f"{pub.base}/v1.0/publish/pubsub", content=b"x", timeout=10)
    assert (r.status_code, r.json()["errorCode"]) == (404, "ERR_TOPIC_NAME_EMPTY")
    r = httpx.post(
        f"{pub.base}/v1.0/publish/pubsub/orders?metadata.rawPayload=maybe", content=b"x", timeout=10
    )
    assert (r.status_code, r.json()["errorCode"]) == (400, "ERR_PUBSUB_REQUEST_METADATA")


def test_metadata_lists_the_apps_programmatic_subscriptions(mesh):
    _, sub = mesh
    md = httpx.get(f"{sub.base}/v1.0/metadata", timeout=10).json()
    subs = {(s["pubsubname"], s["topic"]): s for s in md["subscriptions"]}
    orders = subs[("pubsub", "orders")]
    assert orders["type"] == "PROGRAMMATIC"
    assert orders["rules"] == [{"match": "", "path": "/orders"}]
    assert subs[("pubsub", "flaky")]["deadLetterTopic"] == "poison"
    assert subs[("pubsub", "widgets")]["rules"][0]["match"] == 'event.type == "widget"'
    names = {c["name"]: c["type"] for c in md["components"]}
    assert names["pubsub"] == "pubsub.sqlite"
