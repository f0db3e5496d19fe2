"""Bulk subscribe end to end: an HTTP app under `tandem run` on the embedded broker asks for
``bulkSubscribe`` in ``/dapr/subscribe`` and receives its events in batches (dapr-api §3.6),
answering each entry on its own."""

from __future__ import annotations

import uuid
from collections import Counter

import httpx
import pytest
from pubsub_harness import (
    Records,
    default_resources_with_retries,
    start_subscriber,
    subscription,
)

MAX_MESSAGES = 10

SUBSCRIPTIONS = [
    subscription(
        "pubsub",
        "bulky",
        "/bulky",
        deadLetterTopic="poison",
        bulkSubscribe={
            "enabled": True,
            "maxMessagesCount": MAX_MESSAGES,
            "maxAwaitDurationMs": 300,
        },
    ),
    subscription("pubsub", "poison", "/poison"),
]


@pytest.fixture(scope="module")
def records(tandem_home):
    return Records(tandem_home / "deliveries.jsonl")


@pytest.fixture(scope="module")
def app(tandem_home, records):
    sidecar = start_subscriber(
        tandem_home,
        "bulk-app",
        SUBSCRIPTIONS,
        records,
        "--resources-path",
        str(default_resources_with_retries(tandem_home)),
    )
    yield sidecar
    sidecar.stop()


def test_events_arrive_in_batches_and_each_entry_is_answered_on_its_own(app, records):
    tag = uuid.uuid4().hex
    answers = {3: ["RETRY", "SUCCESS"], 7: ["DROP"]}
    entries = [
        {
            "entryId": str(n),
            "event": {"tag": tag, "n": n, **({"answers": answers[n]} if n in answers else {})},
            "contentType": "application/json",
        }
        for n in range(25)
    ]
    r = httpx.post(f"{app.base}/v1.0-alpha1/publish/bulk/pubsub/bulky", json=entries, timeout=10)
    assert r.status_code == 204, r.text

    def ours(path: str):
        def pred(rec) -> bool:
            data = rec["body"].get("data") if isinstance(rec["body"], dict) else None
            return rec["path"] == path and isinstance(data, dict) and data.get("tag") == tag

        return pred

    [dead] = records.wait_for(ours("/poison"))
    got = records.wait_for(ours("/bulky"), count=26)  # every event, the retried one twice

    assert dead["body"]["data"]["n"] == 7
    assert dead["body"]["topic"] == "bulky"  # the original event, as published
    assert "bulk" not in dead  # the dead-letter topic's subscription is not a bulk one

    per_event = Counter(g["body"]["data"]["n"] for g in got)
    assert per_event == Counter({**dict.fromkeys(range(25), 1), 3: 2})
    by_n: dict[int, list[str]] = {}
    for g in got:
        by_n.setdefault(g["body"]["data"]["n"], []).append(g["answer"])
    assert by_n[3] == ["RETRY", "SUCCESS"]
    assert by_n[7] == ["DROP"]
    assert all(a == ["SUCCESS"] for n, a in by_n.items() if n not in (3, 7))

    batches = Counter(g["bulk"]["id"] for g in got)
    assert all(g["bulk"]["size"] == batches[g["bulk"]["id"]] for g in got)
    assert max(batches.values()) <= MAX_MESSAGES
    assert max(batches.values()) > 1  # batched, not one by one
    assert {g["headers"]["content-type"] for g in got} == {"application/json"}
    assert {g["headers"]["pubsubname"] for g in got} == {"pubsub"}
    assert all(g["body"]["type"] == "com.dapr.event.sent" for g in got)  # each entry a CloudEvent
    [retried_first, retried_again] = [g for g in got if g["body"]["data"]["n"] == 3]
    assert retried_first["bulk"]["id"] != retried_again["bulk"]["id"]
    assert retried_first["body"]["id"] == retried_again["body"]["id"]


def test_metadata_lists_the_bulk_subscription(app):
    md = httpx.get(f"{app.base}/v1.0/metadata", timeout=10).json()
    subs = {(s["pubsubname"], s["topic"]): s for s in md["subscriptions"]}
    assert subs[("pubsub", "bulky")]["deadLetterTopic"] == "poison"
