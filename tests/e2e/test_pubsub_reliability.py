"""At-least-once under a crash: 2,000 messages, the subscriber's runtime killed with
SIGKILL halfway, a new `tandem run` of the same app id started; every message whose
publish was acknowledged (204) must reach the app at least once. Duplicates are allowed
(at-least-once) and reported.

Run over the embedded default broker (SQLite), over real Redis and over a real
Kafka-protocol broker (tansu).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from harness import Sidecar, start_sidecar, wait_until
from pubsub_harness import Records, runtime_pid, start_subscriber, subscription

from servers import redis_server, tansu_server  # noqa: F401  (fixture re-export)

TOTAL = 2000
TOPIC = "reliable"


def _redis_resources(home: Path, address: str) -> Path:
    folder = home / "res-redis"
    folder.mkdir(exist_ok=True)
    (folder / "pubsub.yaml").write_text(
        f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pubsub}}
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{address}"}}
  - {{name: processingTimeout, value: 1s}}
  - {{name: redeliverInterval, value: 200ms}}
"""
    )
    return folder


def _kafka_resources(home: Path, brokers: str) -> Path:
    folder = home / "res-kafka"
    folder.mkdir(exist_ok=True)
    # tansu's group joins are slow: a short session lets the group drop the killed member
    # quickly; `oldest` so nothing published before the group first joined is skipped.
    (folder / "pubsub.yaml").write_text(
        f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pubsub}}
spec:
  type: pubsub.kafka
  version: v1
  metadata:
  - {{name: brokers, value: "{brokers}"}}
  - {{name: consumerGroup, value: reliable-kafka}}
  - {{name: initialOffset, value: oldest}}
  - {{name: sessionTimeout, value: 1s}}
  - {{name: heartbeatInterval, value: 300ms}}
"""
    )
    return folder


async def _publish_range(pub: Sidecar, numbers: range, acked: set[int]) -> None:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=pub.base, limits=limits, timeout=30) as client:
        sem = asyncio.Semaphore(32)

        async def one(n: int) -> None:
            async with sem:
                try:
                    r = await client.post(f"/v1.0/publish/pubsub/{TOPIC}", json={"n": n})
                except httpx.HTTPError:
                    return
                if r.status_code == 204:
                    acked.add(n)

        await asyncio.gather(*(one(n) for n in numbers))


def _delivered(records: Records) -> Counter[int]:
    return Counter(
        r["body"]["data"]["n"]
        for r in records.all()
        if r["path"] == "/reliable" and r["answer"] == "SUCCESS"
    )


@pytest.mark.parametrize("broker", ["embedded", "redis", "kafka"])
def test_every_acknowledged_message_is_delivered_after_the_subscriber_runtime_is_killed(
    broker, tandem_home, request
):
    extra: tuple[str, ...] = ()
    if broker == "redis":
        extra = (
            "--resources-path",
            str(_redis_resources(tandem_home, request.getfixturevalue("redis_server").address)),
        )
    elif broker == "kafka":
        extra = (
            "--resources-path",
            str(_kafka_resources(tandem_home, request.getfixturevalue("tansu_server").brokers)),
        )
    app_id = f"reliable-{broker}"
    records = Records(tandem_home / f"{app_id}.jsonl")
    subs = [subscription("pubsub", TOPIC, "/reliable")]
    sub = start_subscriber(tandem_home, app_id, subs, records, *extra)
    pub = start_sidecar(tandem_home, f"publisher-{broker}", *extra)
    acked: set[int] = set()
    publisher = threading.Thread(
        target=lambda: asyncio.run(_publish_range(pub, range(TOTAL), acked))
    )
    started = time.monotonic()
    try:
        publisher.start()
        # Halfway through the deliveries, while publishing and delivering go on.
        wait_until(lambda: len(_delivered(records)) >= TOTAL // 2, 60, "half the deliveries")
        os.kill(runtime_pid(sub), signal.SIGKILL)
        killed_at = len(_delivered(records))
        sub.proc.wait(30)  # `tandem run` notices its runtime died and stops the app
        sub = start_subscriber(tandem_home, app_id, subs, records, *extra)
        publisher.join(120)
        wait_until(lambda: acked <= set(_delivered(records)), 120, "every acked message")
    finally:
        publisher.join(120)
        sub.stop()
        pub.stop()
    delivered = _delivered(records)
    duplicates = sorted(n for n, c in delivered.items() if c > 1)
    print(
        f"\n[{broker}] killed after {killed_at} deliveries; in {time.monotonic() - started:.1f}s "
        f"published {TOTAL}, acknowledged {len(acked)}, delivered "
        f"{len(delivered)} distinct, {sum(delivered.values()) - len(delivered)} duplicate "
        f"deliveries of {len(duplicates)} messages: {duplicates}"
    )
    assert len(acked) == TOTAL  # the publisher side never went down
    assert acked <= set(delivered)
