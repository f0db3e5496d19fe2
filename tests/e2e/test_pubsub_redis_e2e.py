"""Pub/sub end to end over real Redis, configured from a resources folder: a declarative
Subscription, a Resiliency policy on the component's inbound side, API-token to the app."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest
from harness import start_sidecar
from pubsub_harness import Records, start_subscriber, subscription

from servers import redis_server  # noqa: F401  (fixture re-export)

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module")
def resources(tandem_home, redis_server):  # noqa: F811 - fixture
    folder = tandem_home / "res"
    folder.mkdir()
    (folder / "pubsub.yaml").write_text(
        f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: events}}
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{redis_server.address}"}}
  - {{name: maxLenApprox, value: "10000"}}
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {{name: declared}}
spec:
  pubsubname: events
  topic: declared
  routes: {{default: /declared}}
scopes: [redis-sub]
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {{name: inbound}}
spec:
  policies:
    retries:
      twice: {{policy: constant, duration: 10ms, maxRetries: 2}}
  targets:
    components:
      events: {{inbound: {{retry: twice}}}}
"""
    )
    return folder


@pytest.fixture(scope="module")
def records(tandem_home):
    return Records(tandem_home / "redis-deliveries.jsonl")


@pytest.fixture(scope="module")
def mesh(tandem_home, resources, records):
    subs = [
        subscription("events", "orders", "/orders", deadLetterTopic="dead"),
        subscription("events", "dead", "/dead"),
    ]
    sub = start_subscriber(
        tandem_home,
        "redis-sub",
        subs,
        records,
        "--resources-path",
        str(resources),
        env={"APP_API_TOKEN": "s3cret"},
    )
    pub = start_sidecar(tandem_home, "redis-pub", "--resources-path", str(resources))
    yield pub, sub
    for s in (pub, sub):
        s.stop()


def _tagged(tag: str):
    def pred(r):
        data = r["body"].get("data") if isinstance(r["body"], dict) else None
        return isinstance(data, dict) and data.get("tag") == tag

    return pred


def test_event_crosses_sidecars_through_redis_with_trace_id_and_app_token(mesh, records):
    pub, _ = mesh
    tag = uuid.uuid4().hex
    parent = f"00-{TRACE_ID}-b7ad6b7169203331-01"
    r = httpx.post(
        f"{pub.base}/v1.0/publish/events/orders",
        json={"tag": tag},
        headers={"traceparent": parent},
        timeout=10,
    )
    assert r.status_code == 204, r.text
    [got] = records.wait_for(_tagged(tag))
    assert got["path"] == "/orders"
    assert got["body"]["pubsubname"] == "events"
    assert got["headers"]["traceparent"].split("-")[1] == TRACE_ID
    assert got["headers"]["dapr-api-token"] == "s3cret"  # APP_API_TOKEN reaches the app


def test_declarative_subscription_delivers_and_is_listed_as_declarative(mesh, records):
    pub, sub = mesh
    tag = uuid.uuid4().hex
    httpx.post(f"{pub.base}/v1.0/publish/events/declared", json={"tag": tag}, timeout=10)
    [got] = records.wait_for(_tagged(tag))
    assert got["path"] == "/declared"
    md = httpx.get(f"{sub.base}/v1.0/metadata", timeout=10).json()
    kinds = {s["topic"]: s["type"] for s in md["subscriptions"]}
    assert kinds == {"declared": "DECLARATIVE", "orders": "PROGRAMMATIC", "dead": "PROGRAMMATIC"}


def test_resiliency_inbound_policy_sets_the_retries_before_the_dead_letter(mesh, records):
    pub, _ = mesh
    tag = uuid.uuid4().hex
    body = {"tag": tag, "answers": ["HTTP503"]}
    httpx.post(f"{pub.base}/v1.0/publish/events/orders", json=body, timeout=10)
    records.wait_for(lambda r: _tagged(tag)(r) and r["path"] == "/dead")
    assert len(records.where(lambda r: _tagged(tag)(r) and r["path"] == "/orders")) == 3


def test_raw_payload_is_published_without_an_envelope(mesh, records):
    pub, _ = mesh
    tag = uuid.uuid4().hex
    r = httpx.post(
        f"{pub.base}/v1.0/publish/events/orders?metadata.rawPayload=true",
        content=f"raw-{tag}".encode(),
        timeout=10,
    )
    assert r.status_code == 204

    # Not a CloudEvent on the broker: the subscriber wraps it in a synthetic one.
    def raw(r):
        b = r["body"]
        return (
            isinstance(b, dict)
            and base64.b64decode(b.get("data_base64", "")) == f"raw-{tag}".encode()
        )

    [got] = records.wait_for(raw)
    assert got["body"]["datacontenttype"] == "application/octet-stream"
