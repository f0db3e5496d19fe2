"""Issue acceptance, end to end: the official Dapr SDK drives the state API under
`tandem run` — against the embedded default with no set-up, and against a real Redis from
a `state.redis` component YAML — and the embedded default survives a sidecar restart."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import httpx
import redis
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2
from harness import APPS, start_sidecar

from servers import RedisServer, redis_server  # noqa: F401  (fixture re-export)

SDK_APP = str(APPS / "sdk_state.py")
REDIS_COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: orders
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: "{address}"
  - name: redisPassword
    value: ""
"""


def run_sdk_app(home: Path, app_id: str, *args: str, extra: tuple[str, ...] = ()) -> str:
    """`tandem run ... -- python sdk_state.py ARGS`; returns its output once it exited 0."""
    sidecar = start_sidecar(
        home, app_id, *extra, command=[sys.executable, SDK_APP, *args], wait=False
    )
    code = sidecar.proc.wait(120)
    out = sidecar.text()
    assert code == 0, out
    assert "all state checks passed" in out, out
    assert "FAIL" not in out, out
    return out


def test_official_sdk_state_calls_work_with_the_embedded_default_and_no_set_up(tandem_home):
    out = run_sdk_app(tandem_home, "sdk-default", "statestore", "state.sqlite")
    assert "ok: save_state with a stale etag and first-write is refused" in out
    assert "ok: a refused transaction creates nothing" in out
    # No set-up: `tandem run` wrote the default component itself, a SQLite file in $TANDEM_HOME.
    assert "state.sqlite" in (tandem_home / "components" / "statestore.yaml").read_text()


def test_official_sdk_state_calls_work_against_redis_from_a_component_yaml(
    tandem_home,
    redis_server: RedisServer,  # noqa: F811
):
    resources = tandem_home / "redis-resources"
    resources.mkdir()
    (resources / "orders.yaml").write_text(REDIS_COMPONENT.format(address=redis_server.address))
    out = run_sdk_app(
        tandem_home,
        "sdk-redis",
        "orders",
        "state.redis",
        extra=("--resources-path", str(resources)),
    )
    assert "ok: a refused delete keeps the value" in out
    # The state really lives in that Redis, under Dapr's `<app id>||<key>` names.
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        stored = {k.decode() for k in client.scan_iter(match="sdk-redis||*")}
    finally:
        client.close()
    assert any(k.startswith("sdk-redis||t1-") for k in stored), stored
    assert any(k.startswith("sdk-redis||t2-") for k in stored), stored


def test_embedded_default_state_survives_a_sidecar_restart(tandem_home):
    first = start_sidecar(tandem_home, "keeper")
    try:
        r = httpx.post(
            f"{first.base}/v1.0/state/statestore",
            json=[{"key": "order-1", "value": {"total": 42}}],
            timeout=10,
        )
        assert r.status_code == 204, r.text
        before = httpx.get(f"{first.base}/v1.0/state/statestore/order-1", timeout=10)
        assert before.status_code == 200
    finally:
        assert first.stop() == 0, first.text()

    second = start_sidecar(tandem_home, "keeper")
    try:
        after = httpx.get(f"{second.base}/v1.0/state/statestore/order-1", timeout=10)
        assert after.status_code == 200, after.text
        assert after.json() == {"total": 42}
        assert after.headers["etag"] == before.headers["etag"]
        # The gRPC API reads the same record.
        with grpc.insecure_channel(f"127.0.0.1:{second.grpc_port}") as channel:
            got = dapr_pb2_grpc.DaprStub(channel).GetState(
                state_pb2.GetStateRequest(store_name="statestore", key="order-1"), timeout=10
            )
        assert (got.data, got.etag) == (b'{"total":42}', before.headers["etag"])
        # And the etag still guards writes: the pre-restart etag is the current one.
        r = httpx.post(
            f"{second.base}/v1.0/state/statestore",
            json=[{"key": "order-1", "value": {"total": 43}, "etag": before.headers["etag"]}],
            timeout=10,
        )
        assert r.status_code == 204, r.text
    finally:
        second.stop()
