"""Hot reload of pub/sub (issue 11): a pubsub component and a declarative subscription
added, edited, replaced and removed in a running sidecar's --resources-path take effect
with no restart."""

from __future__ import annotations

from itertools import count

import httpx
import pytest
from harness import wait_until
from pubsub_harness import Records, start_subscriber

PUBSUB = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: hotps}}
spec:
  type: {type}
  version: v1
"""

SUBSCRIPTION = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {{name: hot-orders}}
spec:
  pubsubname: hotps
  topic: orders
  routes: {{default: {route}}}
"""

IDS = count()


@pytest.fixture(scope="module")
def sub(tandem_home, tmp_path_factory):
    resources = tmp_path_factory.mktemp("hot-pubsub")
    records = Records(tandem_home / "hot-pubsub-records.jsonl")
    sidecar = start_subscriber(
        tandem_home, "hotsub", [], records, "--resources-path", str(resources)
    )
    yield sidecar, resources, records
    sidecar.stop()


def publish(sidecar, n: int) -> httpx.Response:
    return httpx.post(f"{sidecar.base}/v1.0/publish/hotps/orders", json={"n": n}, timeout=10)


def error_code(resp: httpx.Response) -> str:
    return resp.json().get("errorCode", "") if resp.status_code >= 400 else ""


def wait_delivered(sidecar, records: Records, route: str, what: str) -> None:
    """Publishes until one event arrives on ``route`` (each attempt a fresh event)."""

    def attempt() -> bool:
        n = next(IDS)
        if publish(sidecar, n).status_code != 204:
            return False
        try:
            records.wait_for(
                lambda r: r["path"] == route and r["body"].get("data") == {"n": n}, timeout=2
            )
        except AssertionError:
            return False
        return True

    wait_until(attempt, 15, what)


def test_a_pubsub_and_its_subscription_added_edited_replaced_and_removed(sub):
    sidecar, resources, records = sub
    assert error_code(publish(sidecar, -1)) == "ERR_PUBSUB_NOT_CONFIGURED"
    (resources / "pubsub.yaml").write_text(PUBSUB.format(type="pubsub.in-memory"))
    (resources / "subscription.yaml").write_text(SUBSCRIPTION.format(route="/orders"))
    wait_delivered(sidecar, records, "/orders", "the added pubsub to deliver")
    meta = httpx.get(f"{sidecar.base}/v1.0/metadata", timeout=10).json()
    assert "hotps" in [c["name"] for c in meta["components"]]
    assert [(s["topic"], s["type"]) for s in meta["subscriptions"]] == [("orders", "DECLARATIVE")]

    (resources / "subscription.yaml").write_text(SUBSCRIPTION.format(route="/orders-v2"))
    wait_delivered(sidecar, records, "/orders-v2", "the edited route to apply")

    (resources / "pubsub.yaml").write_text(PUBSUB.format(type="pubsub.sqlite"))
    wait_until(
        lambda: any(
            c["name"] == "hotps" and c["type"] == "pubsub.sqlite"
            for c in httpx.get(f"{sidecar.base}/v1.0/metadata", timeout=10).json()["components"]
        ),
        10,
        "the replaced pubsub in the metadata",
    )
    wait_delivered(sidecar, records, "/orders-v2", "the replaced pubsub to deliver")

    (resources / "pubsub.yaml").unlink()
    (resources / "subscription.yaml").unlink()
    wait_until(
        lambda: error_code(publish(sidecar, -2)) == "ERR_PUBSUB_NOT_CONFIGURED",
        10,
        "the removed pubsub to be gone",
    )
    assert (
        httpx.get(f"{sidecar.base}/v1.0/metadata", timeout=10).json().get("subscriptions", []) == []
    )
