"""Resiliency on pub/sub delivery (issue 11): an inbound circuit breaker stops calling a
failing app for its ``timeout``; then deliveries resume and the event gets through."""

from __future__ import annotations

import time

import httpx
import pytest
from pubsub_harness import Records, start_subscriber, subscription

OPEN_FOR = 2.0

RESOURCES = f"""\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pubsub}}
spec:
  type: pubsub.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {{name: delivery}}
spec:
  policies:
    retries: {{quick: {{policy: constant, duration: 20ms, maxRetries: -1}}}}
    circuitBreakers: {{cb: {{trip: consecutiveFailures > 2, timeout: {OPEN_FOR:.0f}s}}}}
  targets:
    components:
      pubsub:
        inbound: {{retry: quick, circuitBreaker: cb}}
"""


@pytest.fixture(scope="module")
def subscriber(tandem_home, tmp_path_factory):
    resources = tmp_path_factory.mktemp("res")
    (resources / "resources.yaml").write_text(RESOURCES)
    records = Records(tandem_home / "deliveries.jsonl")
    sidecar = start_subscriber(
        tandem_home,
        "fragile",
        [subscription("pubsub", "orders", "/orders")],
        records,
        "--resources-path",
        str(resources),
    )
    yield sidecar, records
    sidecar.stop()


def test_an_open_breaker_holds_deliveries_to_a_failing_app_for_its_timeout(subscriber):
    sidecar, records = subscriber
    answers = ["HTTP500", "HTTP500", "HTTP500", "SUCCESS"]
    r = httpx.post(
        f"{sidecar.base}/v1.0/publish/pubsub/orders",
        json={"answers": answers},
        timeout=10,
    )
    assert r.status_code == 204
    records.wait_for(lambda r: r["path"] == "/orders", count=3)
    opened = time.monotonic()
    # Open: the app sees nothing until `timeout`; then the held event gets through.
    delivered = records.wait_for(lambda r: r["path"] == "/orders", count=4, timeout=30)
    assert time.monotonic() - opened >= OPEN_FOR * 0.75
    assert len(delivered) == 4
    assert delivered[-1]["answer"] == "SUCCESS"
