"""Issue 9 (Dapr parity), end to end under `tandem run` with a real Redis:

- bug 2: the official SDK sees Dapr's per-key etags on ``state.redis`` (a fresh key's first
  save is ``1``; save a, b, c, then a again: a=2, b=1, c=1), stored as Dapr stores them
  (a hash per key with ``data`` and ``version``, no counter key of our own);
- bug 4: a component with ``metadata.namespace`` (as Dapr's quickstarts ship them) loads
  when ``NAMESPACE`` is unset; with ``NAMESPACE`` set to another namespace it is skipped,
  and the runtime log says which file and why;
- the metadata API (HTTP and the SDK's gRPC GetMetadata) reports Dapr's capabilities for
  these component types.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from dapr.clients import DaprClient
from dapr.conf import settings
from harness import Sidecar, start_sidecar, wait_until

from servers import RedisServer, redis_server  # noqa: F401  (fixture re-export)

RESOURCES = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
  namespace: quickstarts
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: "{redis}"
  - name: redisPassword
    value: ""
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: "{redis}"
"""

# Dapr's capabilities for these types (components-contrib: the Redis state store without
# RedisJSON; Redis Streams declares none), ACTOR added by the runtime for ETAG+TRANSACTIONAL.
REDIS_STATE_CAPS = {"ETAG", "TRANSACTIONAL", "TTL", "KEYS_LIKE", "ACTOR"}


@pytest.fixture(scope="module")
def resources(tandem_home: Path, redis_server: RedisServer) -> Path:  # noqa: F811
    folder = tandem_home / "res-parity-state"
    folder.mkdir()
    (folder / "components.yaml").write_text(RESOURCES.replace("{redis}", redis_server.address))
    return folder


@pytest.fixture(scope="module")
def sidecar(tandem_home: Path, resources: Path) -> Iterator[Sidecar]:
    # NAMESPACE empty counts as unset, as in Dapr (and as under `dapr run`).
    car = start_sidecar(
        tandem_home, "parity-state", "--resources-path", str(resources), env={"NAMESPACE": ""}
    )
    yield car
    car.stop()


@pytest.fixture(scope="module")
def client(sidecar: Sidecar) -> Iterator[DaprClient]:
    # The SDK waits for the sidecar's HTTP health endpoint at DAPR_HTTP_PORT first, as it
    # does under `dapr run` (where that variable is set for the app).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(settings, "DAPR_HTTP_PORT", sidecar.http_port)
        with DaprClient(f"127.0.0.1:{sidecar.grpc_port}") as c:
            yield c


def test_sdk_sees_dapr_per_key_etags_on_redis(
    client: DaprClient,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    run = uuid.uuid4().hex[:8]
    a, b, c = (f"{name}-{run}" for name in "abc")
    client.save_state("statestore", f"fresh-{run}", "v")
    assert client.get_state("statestore", f"fresh-{run}").etag == "1"
    for key in (a, b, c, a):
        client.save_state("statestore", key, f"value of {key}")
    etags = {key: client.get_state("statestore", key).etag for key in (a, b, c)}
    assert etags == {a: "2", b: "1", c: "1"}

    r = redis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        stored = r.hgetall(f"parity-state||{a}")
        assert stored == {b"data": f"value of {a}".encode(), b"version": b"2"}
        assert not r.keys("*etag-seq*")
    finally:
        r.close()


def test_sdk_transaction_counts_each_key_on(client: DaprClient) -> None:
    from dapr.clients.grpc._request import TransactionalStateOperation

    run = uuid.uuid4().hex[:8]
    k = f"tx-{run}"
    client.save_state("statestore", k, "0")
    client.execute_state_transaction(
        "statestore",
        [
            TransactionalStateOperation(key=k, data="1", etag="1"),
            TransactionalStateOperation(key=f"new-{run}", data="x"),
        ],
    )
    assert client.get_state("statestore", k).etag == "2"
    assert client.get_state("statestore", f"new-{run}").etag == "1"


def _components(sidecar: Sidecar) -> dict[str, dict]:
    body = httpx.get(f"{sidecar.base}/v1.0/metadata", timeout=5).json()
    return {c["name"]: c for c in body.get("components", [])}


def test_metadata_reports_dapr_capabilities_over_http_and_grpc(
    sidecar: Sidecar, client: DaprClient
) -> None:
    http = _components(sidecar)
    assert set(http["statestore"]["capabilities"]) == REDIS_STATE_CAPS
    assert http["pubsub"].get("capabilities", []) == []
    grpc = {c.name: c for c in client.get_metadata().registered_components}
    assert set(grpc["statestore"].capabilities) == REDIS_STATE_CAPS
    assert list(grpc["pubsub"].capabilities) == []


def test_component_of_another_namespace_is_skipped_and_logged_when_namespace_is_set(
    tandem_home: Path, resources: Path
) -> None:
    car = start_sidecar(
        tandem_home,
        "parity-ns",
        "--resources-path",
        str(resources),
        env={"NAMESPACE": "elsewhere"},
    )
    try:
        components = _components(car)
        assert "statestore" not in components and "pubsub" in components
        log = tandem_home / "logs" / "parity-ns.runtime.log"
        text = wait_until(
            lambda: "statestore" in (t := log.read_text()) and t, 10, "the skip in the log"
        )
        line = next(x for x in text.splitlines() if "statestore" in x and "skipped" in x)
        assert "quickstarts" in line and "elsewhere" in line and "components.yaml" in line
        saved = httpx.post(
            f"{car.base}/v1.0/state/statestore", json=[{"key": "k", "value": 1}], timeout=5
        )
        # No state store left at all: Dapr's "not configured" answer.
        assert saved.status_code == 500, saved.text
        assert saved.json()["errorCode"] == "ERR_STATE_STORE_NOT_CONFIGURED"
    finally:
        car.stop()
