"""The outbox end to end: under `tandem run`, a state store configured with
``outboxPublishPubsub`` / ``outboxPublishTopic`` turns a committed transaction into one
event per upsert for the subscriber app; a refused transaction publishes nothing."""

from __future__ import annotations

import uuid

import httpx
import pytest
from pubsub_harness import Records, start_subscriber, subscription

RESOURCES = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec:
  type: pubsub.sqlite
  version: v1
  metadata:
  - {name: redeliverInterval, value: 50ms}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: orders}
spec:
  type: state.sqlite
  version: v1
  metadata:
  - {name: outboxPublishPubsub, value: pubsub}
  - {name: outboxPublishTopic, value: order-changes}
"""


@pytest.fixture(scope="module")
def records(tandem_home):
    return Records(tandem_home / "outbox-deliveries.jsonl")


@pytest.fixture(scope="module")
def app(tandem_home, records):
    resources = tandem_home / "res-outbox"
    resources.mkdir()
    (resources / "components.yaml").write_text(RESOURCES)
    subs = [subscription("pubsub", "order-changes", "/changes")]
    sidecar = start_subscriber(
        tandem_home, "outbox-app", subs, records, "--resources-path", str(resources)
    )
    yield sidecar
    sidecar.stop()


def _transact(sidecar, *ops) -> httpx.Response:
    return httpx.post(
        f"{sidecar.base}/v1.0/state/orders/transaction", json={"operations": list(ops)}, timeout=10
    )


def test_committed_transaction_reaches_the_subscriber_and_a_refused_one_does_not(app, records):
    run = uuid.uuid4().hex
    refused = _transact(
        app,
        {
            "operation": "upsert",
            "request": {"key": f"ghost-{run}", "value": {"run": run, "n": 0}, "etag": "77"},
        },
    )
    assert refused.status_code == 500, refused.text
    assert refused.json()["errorCode"] == "ERR_STATE_TRANSACTION"
    ok = _transact(
        app,
        {"operation": "upsert", "request": {"key": f"a-{run}", "value": {"run": run, "n": 1}}},
        {"operation": "upsert", "request": {"key": f"b-{run}", "value": {"run": run, "n": 2}}},
    )
    assert ok.status_code == 204, ok.text

    def mine(r):
        data = r["body"].get("data") if isinstance(r["body"], dict) else None
        return r["path"] == "/changes" and isinstance(data, dict) and data.get("run") == run

    got = records.wait_for(mine, count=2)
    assert sorted(r["body"]["data"]["n"] for r in got) == [1, 2]
    assert all(r["body"]["source"] == "outbox-app" for r in got)
    # The state is there too, and the refused transaction wrote nothing.
    stored = httpx.get(f"{app.base}/v1.0/state/orders/a-{run}", timeout=5)
    assert stored.json() == {"run": run, "n": 1}
    ghost = httpx.get(f"{app.base}/v1.0/state/orders/ghost-{run}", timeout=5)
    assert ghost.status_code == 204
