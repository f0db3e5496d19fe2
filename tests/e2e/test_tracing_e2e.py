"""Tracing end to end (issue 13): Envoy's spans and the runtime's, one trace per request,
received by a real OTLP/gRPC collector; across pub/sub; sampling 0; a collector that is down."""

from __future__ import annotations

import secrets
import uuid

import httpx
import pytest
from collectors import start_otlp_grpc, start_zipkin
from harness import start_sidecar, wait_until
from pubsub_harness import Records, start_subscriber, subscription

from tandem.cli.ports import free_port

CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {{name: tracing}}
spec:
  tracing:
    samplingRate: "{rate}"
    otel: {{endpointAddress: "127.0.0.1:{port}", protocol: grpc, isSecure: false}}
"""


def _config(home, name: str, rate: str, port: int):
    path = home / f"{name}.yaml"
    path.write_text(CONFIG.format(rate=rate, port=port))
    return path


@pytest.fixture(scope="module")
def collector():
    c = start_otlp_grpc(free_port())
    yield c
    c.stop()


@pytest.fixture(scope="module")
def records(tandem_home):
    return Records(tandem_home / "deliveries.jsonl")


@pytest.fixture(scope="module")
def mesh(tandem_home, collector, records):
    traced = _config(tandem_home, "traced", "1", collector.port)
    b = start_subscriber(
        tandem_home,
        "b",
        [subscription("pubsub", "orders", "/orders")],
        records,
        "--config",
        str(traced),
    )
    a = start_sidecar(tandem_home, "a", "--config", str(traced))
    # Sampling 0, though its collector is up; and a collector nobody listens on.
    unsampled = start_sidecar(
        tandem_home, "c", "--config", str(_config(tandem_home, "off", "0", collector.port))
    )
    dead = start_sidecar(
        tandem_home, "d", "--config", str(_config(tandem_home, "dead", "1", free_port()))
    )
    sidecars = (a, b, unsampled, dead)
    yield a, b, unsampled, dead
    for s in sidecars:
        s.stop()


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _invoke_ready(sidecar, app_id: str) -> bool:
    r = httpx.post(f"{sidecar.base}/v1.0/invoke/{app_id}/method/ping", timeout=5)
    return r.status_code == 200


def test_invoke_a_to_b_is_one_trace_with_a_parent_and_b_child(mesh, collector):
    a, b, _, _ = mesh
    wait_until(lambda: _invoke_ready(a, "b"), 30, "a's Envoy to learn about b")
    header, trace_id, client_span = _traceparent()
    r = httpx.post(f"{a.base}/v1.0/invoke/b/method/hello", json={}, headers={"traceparent": header})
    assert r.status_code == 200, r.text

    def linked() -> tuple | None:
        spans = collector.trace(trace_id)
        outbound = [s for s in spans if s.service == "a" and s.parent_id == client_span]
        for parent in outbound:
            inbound = [s for s in spans if s.service == "b" and s.parent_id == parent.span_id]
            if inbound:
                return parent, inbound[0]
        return None

    parent, child = wait_until(linked, 30, "a's outbound span and b's inbound child span")
    assert parent.kind == "CLIENT"
    assert child.kind == "SERVER"


def test_state_save_has_envoys_span_and_the_runtimes_child(mesh, collector):
    a, _, _, _ = mesh
    header, trace_id, client_span = _traceparent()
    r = httpx.post(
        f"{a.base}/v1.0/state/statestore",
        json=[{"key": "traced", "value": 1}],
        headers={"traceparent": header},
    )
    assert r.status_code == 204, r.text
    [store_span] = collector.wait_for(
        lambda s: s.trace_id == trace_id and "db.system" in s.attributes,
        "the runtime's state span",
    )
    assert store_span.service == "a"
    assert store_span.kind == "CLIENT"
    assert store_span.attributes["db.system"] == "sqlite"
    assert store_span.attributes["db.name"] == "statestore"
    assert store_span.attributes["db.operation"] == "SET"
    # Its parent is Envoy's span for this request, itself the client's child.
    parent = wait_until(
        lambda: {s.span_id: s for s in collector.trace(trace_id)}.get(store_span.parent_id),
        30,
        "Envoy's span, parent of the runtime's",
    )
    assert parent.service == "a" and "db.system" not in parent.attributes


def test_state_over_grpc_is_a_child_of_envoys_grpc_span(mesh, collector):
    import grpc
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2

    a, _, _, _ = mesh
    header, trace_id, _ = _traceparent()
    with grpc.insecure_channel(f"127.0.0.1:{a.grpc_port}") as channel:
        dapr_pb2_grpc.DaprStub(channel).GetState(
            state_pb2.GetStateRequest(store_name="statestore", key="traced"),
            metadata=(("traceparent", header),),
        )
    [store_span] = collector.wait_for(
        lambda s: s.trace_id == trace_id and "db.system" in s.attributes,
        "the runtime's span of a gRPC GetState",
    )
    assert store_span.attributes["db.operation"] == "GET"
    parent = wait_until(
        lambda: {s.span_id: s for s in collector.trace(trace_id)}.get(store_span.parent_id),
        30,
        "Envoy's gRPC span, parent of the runtime's",
    )
    assert parent.service == "a" and "db.system" not in parent.attributes


def test_publish_on_a_delivery_on_b_is_one_trace(mesh, collector, records):
    a, _, _, _ = mesh
    header, trace_id, _ = _traceparent()
    tag = uuid.uuid4().hex
    r = httpx.post(
        f"{a.base}/v1.0/publish/pubsub/orders",
        json={"tag": tag},
        headers={"traceparent": header},
    )
    assert r.status_code == 204, r.text
    [delivery] = collector.wait_for(
        lambda s: s.trace_id == trace_id and s.service == "b" and s.kind == "CONSUMER",
        "b's delivery span in a's trace",
    )
    assert delivery.attributes["messaging.destination.name"] == "orders"
    assert delivery.attributes["messaging.system"] == "sqlite"
    publish = wait_until(
        lambda: {s.span_id: s for s in collector.trace(trace_id)}.get(delivery.parent_id),
        30,
        "a's publish span, parent of b's delivery span",
    )
    assert publish.service == "a" and publish.kind == "PRODUCER"
    # The app got the delivery with the same trace.
    [got] = records.wait_for(
        lambda rec: (
            isinstance(rec["body"], dict) and (rec["body"].get("data") or {}) == {"tag": tag}
        )
    )
    # ... whose parent is the delivery span: the app's own spans join the trace.
    assert got["headers"]["traceparent"].split("-")[1:3] == [trace_id, delivery.span_id]


def test_bulk_publish_deliveries_are_in_the_publishers_trace(mesh, collector):
    a, _, _, _ = mesh
    header, trace_id, _ = _traceparent()
    entries = [
        {"entryId": str(i), "event": {"bulk": i}, "contentType": "application/json"}
        for i in range(2)
    ]
    r = httpx.post(
        f"{a.base}/v1.0-alpha1/publish/bulk/pubsub/orders",
        json=entries,
        headers={"traceparent": header},
    )
    assert r.status_code == 204, r.text
    [publish] = collector.wait_for(
        lambda s: s.trace_id == trace_id and s.service == "a" and s.kind == "PRODUCER",
        "a's bulk publish span",
    )
    deliveries = wait_until(
        lambda: (
            (
                found := [
                    s
                    for s in collector.trace(trace_id)
                    if s.service == "b" and s.kind == "CONSUMER"
                ]
            )
            and len(found) == 2
            and found
        ),
        30,
        "b's two delivery spans in a's trace",
    )
    assert {d.attributes["messaging.destination.name"] for d in deliveries} == {"orders"}
    assert {d.parent_id for d in deliveries} == {publish.span_id}


def test_streaming_subscription_delivery_is_in_the_publishers_trace(mesh, collector, monkeypatch):
    a, b, _, _ = mesh
    from dapr.clients import DaprClient
    from dapr.conf import settings

    # The SDK checks the sidecar's HTTP health first.
    monkeypatch.setenv("DAPR_HTTP_PORT", str(b.http_port))
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", b.http_port, raising=False)

    with DaprClient(f"127.0.0.1:{b.grpc_port}") as client:
        sub = client.subscribe("pubsub", "streamed")
        try:
            header, trace_id, _ = _traceparent()
            r = httpx.post(
                f"{a.base}/v1.0/publish/pubsub/streamed",
                json={"s": 1},
                headers={"traceparent": header},
            )
            assert r.status_code == 204, r.text
            msg = sub.next_message()
            assert msg is not None and msg.data() == {"s": 1}
            sub.respond_success(msg)
        finally:
            sub.close()
    [delivery] = collector.wait_for(
        lambda s: s.trace_id == trace_id and s.service == "b" and s.kind == "CONSUMER",
        "b's streaming delivery span in a's trace",
    )
    publish = wait_until(
        lambda: {s.span_id: s for s in collector.trace(trace_id)}.get(delivery.parent_id),
        30,
        "a's publish span, parent of the streaming delivery",
    )
    assert publish.kind == "PRODUCER" and publish.service == "a"


def test_sampling_rate_zero_exports_nothing(mesh, collector):
    a, _, unsampled, _ = mesh
    header, trace_id, _ = _traceparent()
    assert (
        httpx.get(
            f"{unsampled.base}/v1.0/state/statestore/k", headers={"traceparent": header}
        ).status_code
        == 204
    )
    r = httpx.post(
        f"{unsampled.base}/v1.0/publish/pubsub/orders", json={}, headers={"traceparent": header}
    )
    assert r.status_code == 204
    # A marker through a traced sidecar afterwards: once its Envoy and runtime spans are in,
    # a flush of c's exporters (same intervals) would have landed too.
    marker, marker_id, _ = _traceparent()
    httpx.get(f"{a.base}/v1.0/state/statestore/k", headers={"traceparent": marker})
    collector.wait_for(lambda s: s.trace_id == marker_id and "db.system" in s.attributes, "marker")
    collector.wait_for(
        lambda s: s.trace_id == marker_id and "db.system" not in s.attributes, "marker"
    )
    # Nothing of c's, though the caller's traceparent said "sampled" (b, which samples,
    # may still trace its delivery of c's event: it follows the caller's decision).
    assert not [s for s in collector.snapshot() if s.service == "c"]


def test_a_collector_that_is_down_does_not_affect_requests(mesh):
    _, _, _, dead = mesh
    wait_until(lambda: _invoke_ready(dead, "b"), 30, "d's Envoy to learn about b")
    for i in range(20):
        r = httpx.post(f"{dead.base}/v1.0/state/statestore", json=[{"key": f"k{i}", "value": i}])
        assert r.status_code == 204, r.text
        assert httpx.get(f"{dead.base}/v1.0/state/statestore/k{i}").json() == i
        assert httpx.post(f"{dead.base}/v1.0/invoke/b/method/x", json={}).status_code == 200
        r = httpx.post(f"{dead.base}/v1.0/publish/pubsub/orders", json={"i": i})
        assert r.status_code == 204

    def dropped() -> float:
        port = dead.record()["metrics_port"]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        line = next(
            (x for x in text.splitlines() if x.startswith("tandem_tracing_dropped_spans{")), ""
        )
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    # The spans that could not be sent are counted (after the exporter's 5 s attempt).
    wait_until(lambda: dropped() > 0, 60, "dropped spans to be counted in /metrics")


ZIPKIN_CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {{name: zipkin}}
spec:
  tracing:
    samplingRate: "1"
    zipkin: {{endpointAddress: "http://127.0.0.1:{port}/api/v2/spans"}}
"""


def test_zipkin_receives_envoys_span_and_the_runtimes_child(tandem_home):
    zipkin = start_zipkin(free_port())
    config = tandem_home / "zipkin.yaml"
    config.write_text(ZIPKIN_CONFIG.format(port=zipkin.port))
    # Through ext_proc: Envoy hands its span over in the Process call's gRPC metadata.
    z = start_sidecar(tandem_home, "z", "--api-transport", "ext_proc", "--config", str(config))
    try:
        header, trace_id, _ = _traceparent()
        r = httpx.get(f"{z.base}/v1.0/state/statestore/nothing", headers={"traceparent": header})
        assert r.status_code == 204
        # Envoy's Zipkin tracer reports every 5 spans (or on a one-minute timer).
        for _ in range(5):
            httpx.get(f"{z.base}/v1.0/state/statestore/nothing")
        [store_span] = zipkin.wait_for(
            lambda s: s.trace_id == trace_id and "db.system" in s.attributes,
            "the runtime's state span in Zipkin",
        )
        assert store_span.service == "z"
        assert store_span.attributes["db.operation"] == "GET"
        parent = wait_until(
            lambda: {s.span_id: s for s in zipkin.trace(trace_id)}.get(store_span.parent_id),
            30,
            "Envoy's span, parent of the runtime's, in Zipkin",
        )
        assert parent.service == "z"
    finally:
        z.stop()
        zipkin.stop()
