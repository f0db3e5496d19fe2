"""The owner's /metrics with its workers' series (--runtime-workers): pure folding."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tandem.observability.metrics_fold import fold, up_family

OWNER = b"""# HELP dapr_http_server_request_count HTTP API requests received
# TYPE dapr_http_server_request_count counter
dapr_http_server_request_count{app_id="a",method="GET",path=""} 2.0
# HELP dapr_runtime_component_loaded Components loaded
# TYPE dapr_runtime_component_loaded gauge
dapr_runtime_component_loaded{app_id="a"} 3.0
# HELP dapr_resiliency_activations Resiliency policies activated
# TYPE dapr_resiliency_activations counter
"""
WORKER = b"""# HELP dapr_http_server_request_count HTTP API requests received
# TYPE dapr_http_server_request_count counter
dapr_http_server_request_count{app_id="a",method="POST",path=""} 5.0
# HELP dapr_runtime_component_loaded Components loaded
# TYPE dapr_runtime_component_loaded gauge
dapr_runtime_component_loaded{app_id="a"} 3.0
# HELP dapr_resiliency_activations Resiliency policies activated
# TYPE dapr_resiliency_activations counter
dapr_resiliency_activations{app_id="a",policy="retry"} 1.0
"""


def _samples(text: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text.decode()):
        out[family.name] = [(dict(s.labels), s.value) for s in family.samples]
    return out


def test_each_family_once_with_every_process_series_labelled_by_worker() -> None:
    folded = fold([("0", OWNER), ("1", WORKER)])

    assert folded.count(b"# TYPE dapr_http_server_request_count counter") == 1
    samples = _samples(folded)
    requests = samples["dapr_http_server_request_count"]
    assert [(labels["worker"], labels["method"], value) for labels, value in requests] == [
        ("0", "GET", 2.0),
        ("1", "POST", 5.0),
    ]
    assert [labels["worker"] for labels, _ in samples["dapr_runtime_component_loaded"]] == [
        "0",
        "1",
    ]
    # A family only one process has samples of keeps its header, once.
    assert [labels["worker"] for labels, _ in samples["dapr_resiliency_activations"]] == ["1"]


def test_a_family_without_samples_anywhere_is_left_out() -> None:
    folded = fold([("0", OWNER)])

    assert b"dapr_resiliency_activations" not in folded
    assert b'dapr_runtime_component_loaded{worker="0",app_id="a"} 3.0' in folded


def test_a_sample_without_labels_gets_the_worker_label() -> None:
    folded = fold([("2", b"# TYPE x gauge\nx 1\n")])

    assert folded == b'# TYPE x gauge\nx{worker="2"} 1\n'


def test_up_says_which_workers_answered() -> None:
    samples = _samples(up_family([("1", True), ("2", False)]))

    assert samples["tandem_runtime_worker_up"] == [({"worker": "1"}, 1.0), ({"worker": "2"}, 0.0)]
