"""Issue 9, bug 3: the outbox on ``state.redis`` + ``pubsub.redis``, end to end under
`tandem run` with real Redis servers and the official SDK.

- An app that commits a transaction with ``execute_state_transaction`` and exits at once
  (its sidecar stops right after) still gets its events published, promptly, and leaves
  no pending internal message and no marker key behind.
- Transactions of a running sidecar are published promptly, every one of them (the
  internal topic's redelivery, ``processingTimeout`` = 60 s by default, must never be
  what publishes them).
- kill -9 while the publish target is down: the failure is logged, and after Redis is back
  and the sidecar restarted, the events are published.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from dapr.clients import DaprClient
from dapr.clients.grpc._request import TransactionalStateOperation
from dapr.conf import settings
from harness import APPS, Sidecar, start_sidecar, wait_until
from pubsub_harness import Records, runtime_pid, start_subscriber, subscription

from servers import RedisProcess, RedisServer, redis_server, run_redis_process  # noqa: F401

# Far below the 60 s the internal topic's redelivery would take (the bug), and generous.
PROMPT_S = 10.0

RESOURCES = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pubsub}}
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{main}"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: orders}}
spec:
  type: state.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{main}"}}
  - {{name: outboxPublishPubsub, value: pubsub}}
  - {{name: outboxPublishTopic, value: order-events}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: relay}}
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{main}"}}
  - {{name: processingTimeout, value: 2s}}
  - {{name: redeliverInterval, value: 500ms}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: remote}}
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{remote}"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: shipments}}
spec:
  type: state.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{main}"}}
  - {{name: outboxPublishPubsub, value: remote}}
  - {{name: outboxPublishTopic, value: shipment-events}}
  - {{name: outboxPubsub, value: relay}}
"""


@pytest.fixture(scope="module")
def remote_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A second Redis, the publish target of ``shipments``: the crash test takes it away."""
    with run_redis_process(tmp_path_factory.mktemp("remote-redis")) as proc:
        yield proc


@pytest.fixture(scope="module")
def resources(
    tandem_home: Path,
    redis_server: RedisServer,  # noqa: F811
    remote_redis: RedisProcess,
) -> Path:
    folder = tandem_home / "res-parity-outbox"
    folder.mkdir()
    (folder / "components.yaml").write_text(
        RESOURCES.format(main=redis_server.address, remote=remote_redis.server.address)
    )
    return folder


@pytest.fixture(scope="module")
def records(tandem_home: Path) -> Records:
    return Records(tandem_home / "outbox-parity.jsonl")


@pytest.fixture(scope="module")
def subscriber(tandem_home: Path, resources: Path, records: Records) -> Iterator[Sidecar]:
    subs = [
        subscription("pubsub", "order-events", "/orders"),
        subscription("remote", "shipment-events", "/shipments"),
    ]
    car = start_subscriber(
        tandem_home, "outbox-sub", subs, records, "--resources-path", str(resources)
    )
    yield car
    car.stop()


@pytest.fixture(scope="module")
def rdb(redis_server: RedisServer) -> Iterator[redis.Redis]:  # noqa: F811
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    yield client
    client.close()


def _tagged(tag: str, path: str):
    def match(r: dict) -> bool:
        data = r["body"].get("data") if isinstance(r["body"], dict) else None
        return r["path"] == path and isinstance(data, dict) and data.get("tag") == tag

    return match


def _nothing_left_behind(rdb: redis.Redis, app_id: str, store: str, topic: str) -> None:
    internal = f"{app_id}-{store}-{topic}-outbox"
    pending = rdb.xpending(internal, app_id)
    assert pending["pending"] == 0, pending
    assert not rdb.keys(f"{app_id}||tandem-outbox-*")


def test_app_exiting_right_after_its_transaction_gets_its_events_published(
    tandem_home: Path,
    resources: Path,
    subscriber: Sidecar,
    records: Records,
    rdb: redis.Redis,
) -> None:
    tag = uuid.uuid4().hex
    writer = start_sidecar(
        tandem_home,
        "outbox-writer",
        "--resources-path",
        str(resources),
        command=[sys.executable, str(APPS / "sdk_outbox.py"), "orders", tag, "3"],
        wait=False,
    )
    try:
        assert writer.proc.wait(90) == 0, writer.text()
    except subprocess.TimeoutExpired:
        writer.stop()
        raise
    assert "committed" in writer.text()
    got = records.wait_for(_tagged(tag, "/orders"), count=3, timeout=PROMPT_S)
    assert sorted(r["body"]["data"]["n"] for r in got) == [0, 1, 2]
    assert all(r["body"]["source"] == "outbox-writer" for r in got)
    _nothing_left_behind(rdb, "outbox-writer", "orders", "order-events")


@pytest.fixture(scope="module")
def live(tandem_home: Path, resources: Path) -> Iterator[Sidecar]:
    car = start_sidecar(tandem_home, "outbox-live", "--resources-path", str(resources))
    yield car
    car.stop()


def test_every_transaction_of_a_running_sidecar_is_published_promptly(
    live: Sidecar, subscriber: Sidecar, records: Records, rdb: redis.Redis
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(settings, "DAPR_HTTP_PORT", live.http_port)
        with DaprClient(f"127.0.0.1:{live.grpc_port}") as client:
            for _ in range(8):
                tag = uuid.uuid4().hex
                value = json.dumps({"tag": tag, "n": 0})
                client.execute_state_transaction(
                    "orders", [TransactionalStateOperation(key=tag, data=value)]
                )
                records.wait_for(_tagged(tag, "/orders"), timeout=PROMPT_S)
    wait_until(lambda: not rdb.keys("outbox-live||tandem-outbox-*"), PROMPT_S, "the markers to go")
    _nothing_left_behind(rdb, "outbox-live", "orders", "order-events")


def test_events_survive_kill_9_while_the_publish_target_is_down(
    tandem_home: Path,
    resources: Path,
    subscriber: Sidecar,
    records: Records,
    remote_redis: RedisProcess,
) -> None:
    car = start_sidecar(tandem_home, "outbox-crash", "--resources-path", str(resources))
    tag = uuid.uuid4().hex
    try:
        remote_redis.stop()
        ops = [
            {"operation": "upsert", "request": {"key": f"{tag}-{i}", "value": {"tag": tag, "n": i}}}
            for i in range(2)
        ]
        done = httpx.post(
            f"{car.base}/v1.0/state/shipments/transaction", json={"operations": ops}, timeout=30
        )
        assert done.status_code == 204, done.text
        log = tandem_home / "logs" / "outbox-crash.runtime.log"
        wait_until(
            lambda: "outbox publish to remote/shipment-events failed" in log.read_text(),
            30,
            "the failed publish in the runtime log",
        )
        os.kill(runtime_pid(car), signal.SIGKILL)
        car.proc.wait(30)  # `tandem run` notices its runtime died and stops
    finally:
        car.stop()
        remote_redis.start()
    assert not records.where(_tagged(tag, "/shipments"))
    again = start_sidecar(tandem_home, "outbox-crash", "--resources-path", str(resources))
    try:
        got = records.wait_for(_tagged(tag, "/shipments"), count=2, timeout=60)
        assert sorted({r["body"]["data"]["n"] for r in got}) == [0, 1]
    finally:
        again.stop()
