"""Dapr's invocation and resiliency metrics from Envoy's Prometheus stats (pure)."""

from __future__ import annotations

from tandem.observability.metrics import RuntimeMetrics
from tandem.observability.metrics_server import invocation_metrics

ENVOY = """\
# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name="app_b"} 7
envoy_cluster_upstream_rq_total{envoy_cluster_name="local_app"} 30
envoy_cluster_upstream_rq_total{envoy_cluster_name="tandem_runtime"} 99
# TYPE envoy_cluster_upstream_rq_retry counter
envoy_cluster_upstream_rq_retry{envoy_cluster_name="app_b"} 2
envoy_cluster_upstream_rq_retry{envoy_cluster_name="app_c"} 0
# TYPE envoy_vhost_vcluster_upstream_rq_total counter
envoy_vhost_vcluster_upstream_rq_total{envoy_virtual_cluster="c",envoy_virtual_host="dapr_inbound"} 3
envoy_vhost_vcluster_upstream_rq_total{envoy_virtual_cluster="d",envoy_virtual_host="dapr_inbound"} 0
envoy_vhost_vcluster_upstream_rq_total{envoy_virtual_cluster="other",envoy_virtual_host="dapr_inbound"} 9
# TYPE envoy_cluster_upstream_rq_time histogram
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="app_b",le="0.5"} 1
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="app_b",le="+Inf"} 7
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="app_b"} 12.5
envoy_cluster_upstream_rq_time_count{envoy_cluster_name="app_b"} 7
"""


def test_invocation_and_resiliency_metrics_from_envoy_counters():
    text = invocation_metrics(ENVOY, "a").decode()
    assert (
        'dapr_runtime_service_invocation_req_sent_total{app_id="a",destination_app_id="b",'
        'type="http"} 7.0' in text
    )
    # Received: by caller, without the requests that name none (probes of the app).
    assert (
        'dapr_runtime_service_invocation_req_recv_total{app_id="a",source_app_id="c",'
        'type="http"} 3.0' in text
    )
    assert 'source_app_id="d"' not in text and 'source_app_id="other"' not in text
    assert (
        'dapr_runtime_service_invocation_res_recv_latency_ms_count{app_id="a",'
        'destination_app_id="b"} 7.0' in text
    )
    assert (
        'dapr_resiliency_activations_total{app_id="a",flow_direction="outbound",'
        'policy="retry",target="app_b"} 2.0' in text
    )
    assert 'target="app_c"' not in text


def test_runtime_activations_join_envoys_in_one_family():
    metrics = RuntimeMetrics("a")
    metrics.activations_for("outbound", "component_statestore")("retry")
    metrics.activations_for("outbound", "component_statestore")("retry")
    text = invocation_metrics(ENVOY, "a", metrics.activations).decode()
    assert text.count("# TYPE dapr_resiliency_activations_total counter") == 1
    assert (
        'dapr_resiliency_activations_total{app_id="a",flow_direction="outbound",'
        'policy="retry",target="component_statestore"} 2.0' in text
    )
    assert 'target="app_b"' in text
    assert "dapr_resiliency_activations" not in metrics.render().decode()


def test_runtime_metrics_use_dapr_names_without_created_series():
    m = RuntimeMetrics("a")
    m.state("statestore", "get", True, 1.5)
    text = m.render().decode()
    assert "# TYPE dapr_component_state_count counter" in text
    assert (
        'dapr_component_state_count{app_id="a",component="statestore",namespace="default",'
        'operation="get",success="true"} 1.0' in text
    )
    assert "_created" not in text and "dapr_component_state_count_total" not in text


def test_disabled_metrics_render_nothing():
    m = RuntimeMetrics("a", enabled=False)
    m.http("GET", "/x", 200, 1.0)
    assert m.render() == b""
