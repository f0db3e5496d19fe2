"""Pub/sub samples run as `dapr run` would run them: ``checkout`` publishes with the SDK, over
plain HTTP and as its own CloudEvent; ``order-processor`` (FastAPI with the SDK's DaprApp)
gets every event, through a programmatic and a declarative subscription, as CloudEvents."""

from __future__ import annotations

import json

import httpx
import pytest
from harness import wait_until  # tests/e2e, put on sys.path by this folder's conftest.py

from servers import free_port


@pytest.fixture(scope="module")
def order_processor(quickstarts, dapr_run):
    run = dapr_run(
        quickstarts / "order_processor",
        *("--app-id", "order-processor", "--app-port", str(free_port())),
        *("--resources-path", "../components", "--", "python3", "app.py"),
    )
    # Healthy means the app answered and its subscriptions started.
    run.wait_healthy()
    return run


def _received(run) -> list[dict]:
    prefix = "Subscriber received: "
    return [
        json.loads(ln[len(prefix) :]) for ln in run.text().splitlines() if ln.startswith(prefix)
    ]


def test_metadata_lists_programmatic_and_declarative_subscriptions(order_processor):
    md = httpx.get(f"{order_processor.base}/v1.0/metadata", timeout=10).json()
    subs = {(s["pubsubname"], s["topic"]): s for s in md["subscriptions"]}
    assert subs[("pubsub", "orders")]["type"] == "PROGRAMMATIC", md
    assert subs[("pubsub", "orders")]["rules"] == [{"match": "", "path": "/events/pubsub/orders"}]
    assert subs[("pubsub", "shipments")]["type"] == "DECLARATIVE", md
    assert subs[("pubsub", "shipments")]["rules"] == [{"match": "", "path": "/shipments"}]


def test_checkout_events_reach_order_processor_as_cloudevents(
    quickstarts, dapr_run, order_processor
):
    checkout = dapr_run(
        quickstarts / "checkout",
        *("--app-id", "checkout", "--resources-path", "../components"),
        *("--", "python3", "app.py"),
    )
    assert checkout.wait(120) == 0, checkout.text()
    assert "Published own CloudEvent: 6" in checkout.text()

    def all_in() -> list[dict] | None:
        got = _received(order_processor)
        return got if len(got) >= 8 else None

    events = wait_until(all_in, 60, "8 events at order-processor")
    orders = {e["data"]["orderId"]: e for e in events if e["route"] == "orders"}
    shipments = {e["data"]["shipmentId"]: e for e in events if e["route"] == "shipments"}
    assert sorted(orders) == [1, 2, 3, 4, 5, 6], events
    assert sorted(shipments) == [1, 2], events

    for order_id in (1, 2, 3, 4, 5):  # SDK (1-3) and HTTP (4-5): Dapr wraps them
        e = orders[order_id]
        assert e["contentType"] == "application/cloudevents+json", e
        assert (e["specversion"], e["type"], e["source"]) == (
            "1.0",
            "com.dapr.event.sent",
            "checkout",
        ), e
        assert (e["topic"], e["pubsubname"], e["datacontenttype"]) == (
            "orders",
            "pubsub",
            "application/json",
        ), e
        assert e["id"], e
    own = orders[6]  # the app's own CloudEvent keeps its id, source and type
    assert (own["id"], own["source"], own["type"]) == (
        "checkout-ce-6",
        "checkout-service",
        "com.example.order.created",
    ), own
    assert (own["topic"], own["pubsubname"]) == ("orders", "pubsub"), own
    for e in shipments.values():
        assert (e["topic"], e["source"], e["type"]) == (
            "shipments",
            "checkout",
            "com.dapr.event.sent",
        ), e
