"""Deliveries to an HTTP app go straight to its port unless something needs Envoy's app
channel (blocks/app_route.py): an ``appHttpPipeline`` added to the sidecar's
Configuration while it runs applies to the next deliveries, and removing it again brings
them back unchanged."""

from __future__ import annotations

import itertools
import json

import httpx
import pytest
from harness import wait_until
from pubsub_harness import Records, start_subscriber, subscription

RESOURCES = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec: {type: pubsub.in-memory, version: v1, metadata: []}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: upper}
spec: {type: middleware.http.uppercase, version: v1}
"""

PLAIN = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: plain}
spec: {}
"""

UPPER = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: plain}
spec:
  appHttpPipeline:
    handlers:
    - {name: upper, type: middleware.http.uppercase}
"""


@pytest.fixture(scope="module")
def sub(tandem_home, tmp_path_factory):
    folder = tmp_path_factory.mktemp("appchannel")
    (folder / "res").mkdir()
    (folder / "res" / "components.yaml").write_text(RESOURCES)
    config = folder / "config.yaml"
    config.write_text(PLAIN)
    records = Records(folder / "records.jsonl")
    sidecar = start_subscriber(
        tandem_home,
        "appchannel",
        [subscription("pubsub", "words", "/words")],
        records,
        "--resources-path",
        str(folder / "res"),
        "--config",
        str(config),
    )
    yield sidecar, records, config
    sidecar.stop()


def _delivered_as(sub, word: str, expected: str, timeout: float = 30.0) -> None:
    """Publish ``word`` (with a fresh suffix) until one arrives as ``expected`` would."""
    sidecar, records, _ = sub
    counter = itertools.count()

    def arrived() -> bool:
        n = next(counter)
        r = httpx.post(
            f"{sidecar.base}/v1.0/publish/pubsub/words", json={"word": f"{word}-{n}"}, timeout=10
        )
        assert r.status_code == 204, r.text
        seen = [json.dumps(x["body"]) for x in records.all()]
        return any(f"{expected}-" in text for text in seen)

    wait_until(arrived, timeout, f"a delivery carrying {expected!r}")


def test_deliveries_reach_the_app_unchanged_without_an_app_pipeline(sub):
    _delivered_as(sub, "quiet", "quiet")
    assert all("QUIET" not in json.dumps(r["body"]) for r in sub[1].all())


def test_an_app_pipeline_added_and_removed_at_runtime_applies_to_deliveries(sub):
    _, _, config = sub
    config.write_text(UPPER)
    _delivered_as(sub, "loud", "LOUD")
    config.write_text(PLAIN)
    _delivered_as(sub, "soft", "soft")
