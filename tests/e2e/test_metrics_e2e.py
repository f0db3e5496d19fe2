"""The sidecar's /metrics (issue 13): the runtime's metrics under Dapr's names and labels,
the invocation ones from Envoy's counters, Envoy's stats still there; buckets from the
Configuration; metrics.enabled false turns Dapr's off."""

from __future__ import annotations

import re

import grpc
import httpx
import pytest
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2
from harness import APPS, start_app_sidecar, start_sidecar, wait_until

CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {{name: m}}
spec:
  metrics:
    enabled: {enabled}
    latencyDistributionBuckets: [5, 50, 500]
"""


@pytest.fixture(scope="module")
def mesh(tandem_home):
    on, off = tandem_home / "on.yaml", tandem_home / "off.yaml"
    on.write_text(CONFIG.format(enabled="true"))
    off.write_text(CONFIG.format(enabled="false"))
    b = start_app_sidecar(tandem_home, "b", APPS / "echo_app.py", "--config", str(on))
    a = start_sidecar(tandem_home, "a", "--config", str(on))
    c = start_sidecar(tandem_home, "c", "--config", str(off))
    yield a, b, c
    for s in (a, b, c):
        s.stop()


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _samples(sidecar) -> dict[tuple[str, frozenset], float]:
    """Sample lines exactly as served (a Prometheus parser would rename counters)."""
    port = sidecar.record()["metrics_port"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        out[(name, frozenset(_LABEL.findall(labels)))] = float(value)
    return out


def _value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_have_dapr_names_labels_and_counts_after_traffic(mesh):
    a, b, _ = mesh
    wait_until(
        lambda: httpx.get(f"{a.base}/v1.0/invoke/b/method/x").status_code == 200,
        30,
        "a's Envoy to learn about b",
    )
    for i in range(3):
        r = httpx.post(f"{a.base}/v1.0/state/statestore", json=[{"key": f"m{i}", "value": i}])
        assert r.status_code == 204
    assert httpx.get(f"{a.base}/v1.0/state/statestore/m1").json() == 1
    assert httpx.post(f"{a.base}/v1.0/publish/pubsub/orders", json={}).status_code == 204
    for _ in range(4):
        assert httpx.get(f"{a.base}/v1.0/invoke/b/method/x").status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{a.grpc_port}") as channel:
        dapr_pb2_grpc.DaprStub(channel).GetState(
            state_pb2.GetStateRequest(store_name="statestore", key="m2")
        )

    s = _samples(a)
    state = dict(app_id="a", component="statestore", namespace="default")
    assert _value(s, "dapr_component_state_count", **state, operation="set", success="true") == 3
    assert _value(s, "dapr_component_state_count", **state, operation="get", success="true") == 2
    assert (
        _value(s, "dapr_component_state_latencies_count", **state, operation="set", success="true")
        == 3
    )
    assert (
        _value(
            s,
            "dapr_component_pubsub_egress_count",
            app_id="a",
            component="pubsub",
            namespace="default",
            success="true",
            topic="orders",
        )
        == 1
    )
    assert _value(s, "dapr_http_server_request_count", app_id="a", method="POST", path="") >= 4
    assert (
        _value(
            s, "dapr_http_server_response_count", app_id="a", method="GET", path="", status="200"
        )
        >= 1
    )
    assert (
        _value(
            s,
            "dapr_grpc_io_server_completed_rpcs",
            app_id="a",
            grpc_server_method="/dapr.proto.runtime.v1.Dapr/GetState",
            grpc_server_status="OK",
        )
        == 1
    )
    # The default resources: statestore, pubsub and lockstore.
    assert _value(s, "dapr_component_loaded", app_id="a") == 3
    # Invocations never enter the runtime: these come from Envoy's own counters.
    sent = _value(
        s,
        "dapr_runtime_service_invocation_req_sent_total",
        app_id="a",
        destination_app_id="b",
        type="http",
    )
    assert sent is not None and sent >= 5
    # Envoy folds its histograms in at each stats flush (every 5 s).
    wait_until(
        lambda: (
            (
                _value(
                    _samples(a),
                    "dapr_runtime_service_invocation_res_recv_latency_ms_count",
                    app_id="a",
                    destination_app_id="b",
                )
                or 0
            )
            >= 5
        ),
        30,
        "the invocation latency histogram",
    )
    # The callee counts what it received by caller (Envoy's counters per caller header).
    recv = _value(
        _samples(b),
        "dapr_runtime_service_invocation_req_recv_total",
        app_id="b",
        source_app_id="a",
        type="http",
    )
    assert recv is not None and recv >= 5
    # latencyDistributionBuckets: exactly the Configuration's bounds.
    bounds = {
        dict(labels)["le"]
        for name, labels in s
        if name == "dapr_http_server_latency_bucket" and dict(labels)["method"] == "POST"
    }
    assert bounds == {"5.0", "50.0", "500.0", "+Inf"}
    # Envoy's own stats are still served.
    assert any(name.startswith("envoy_cluster_upstream_rq") for name, _ in s)


def test_metrics_enabled_false_leaves_only_envoys_stats(mesh):
    *_, c = mesh
    s = _samples(c)
    assert not [name for name, _ in s if name.startswith("dapr_")]
    assert any(name.startswith("envoy_") for name, _ in s)
