"""The sidecar's ``GET /metrics``: the runtime's Dapr metrics, Dapr's service-invocation
metrics computed from Envoy's own counters (invocations never enter the runtime), then
Envoy's stats as they were served before. Envoy's metrics listener forwards ``/metrics``
here, on a Unix socket; Envoy's stats come from its admin socket. Served by the runtime's
own HTTP/1.1 server (``tandem.ext_proc.http_server``): no HTTP framework is loaded for it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from tandem.envoy.admin import AdminError, admin_request
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.http_server import HttpApiServer
from tandem.observability.metrics import RuntimeMetrics

log = logging.getLogger("tandem.metrics")

ENVOY_PROMETHEUS = "/stats/prometheus"
_TEXT = b"text/plain; charset=utf-8"
_MAX_BODY = 64 << 10  # GET /metrics has no body
# Envoy clusters that carry invocations to callees: app:X (Envoy's Prometheus output writes
# the name as app_X; app ids have no ':').
_CALLEE_PREFIX = "app_"
# Received invocations: the inbound virtual host counts each caller in a virtual cluster
# named by its app id (translate/routes.py); "other" holds requests with no caller header.
_INBOUND_VHOST = "dapr_inbound"
_NO_CALLER = "other"
# Envoy's counters (family names, as the parser gives them) of a callee cluster → Dapr's
# resiliency policy; the target is app_<id>, as Dapr writes it.
_ACTIVATIONS = {
    "envoy_cluster_upstream_rq_retry": "retry",
    "envoy_cluster_upstream_rq_timeout": "timeout",
    "envoy_cluster_outlier_detection_ejections_enforced": "circuitbreaker",
}


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def invocation_metrics(
    envoy_text: str,
    app_id: str,
    runtime_activations: Mapping[tuple[str, str, str], int] | None = None,
) -> bytes:
    """Dapr's invocation metrics from Envoy's Prometheus stats, and the resiliency
    activations of both Envoy (invocations) and the runtime (``runtime_activations``, by
    direction, target and policy: components, deliveries, actors) in one family (pure)."""
    sent = CounterMetricFamily(
        "dapr_runtime_service_invocation_req_sent",
        "Invocations sent, by callee",
        labels=["app_id", "destination_app_id", "type"],
    )
    recv = CounterMetricFamily(
        "dapr_runtime_service_invocation_req_recv",
        "Invocations received from other apps, by caller",
        labels=["app_id", "source_app_id", "type"],
    )
    latency = HistogramMetricFamily(
        "dapr_runtime_service_invocation_res_recv_latency_ms",
        "Time to the callee's response (ms), by callee",
        labels=["app_id", "destination_app_id"],
    )
    activations = CounterMetricFamily(
        "dapr_resiliency_activations",
        "Resiliency policies activated (retries, timeouts, circuit breakers opening)",
        labels=["app_id", "flow_direction", "target", "policy"],
    )
    buckets: dict[str, list[tuple[str, float]]] = {}
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(envoy_text):
        for sample in family.samples:
            cluster = sample.labels.get("envoy_cluster_name", "")
            name = sample.name
            if name == "envoy_cluster_upstream_rq_total":
                if cluster.startswith(_CALLEE_PREFIX):
                    sent.add_metric([app_id, cluster[len(_CALLEE_PREFIX) :], "http"], sample.value)
            elif name == "envoy_vhost_vcluster_upstream_rq_total":
                caller = sample.labels.get("envoy_virtual_cluster", _NO_CALLER)
                vhost = sample.labels.get("envoy_virtual_host")
                if vhost == _INBOUND_VHOST and caller != _NO_CALLER and sample.value > 0:
                    recv.add_metric([app_id, caller, "http"], sample.value)
            elif cluster.startswith(_CALLEE_PREFIX) and family.name in _ACTIVATIONS:
                if sample.value > 0:  # as Dapr: a series once a policy has acted
                    labels = [app_id, "outbound", cluster, _ACTIVATIONS[family.name]]
                    activations.add_metric(labels, sample.value)
            elif cluster.startswith(_CALLEE_PREFIX) and name.startswith(
                "envoy_cluster_upstream_rq_time"
            ):
                callee = cluster[len(_CALLEE_PREFIX) :]
                if name.endswith("_bucket"):
                    buckets.setdefault(callee, []).append((sample.labels["le"], sample.value))
                elif name.endswith("_sum"):
                    sums[callee] = sample.value
    for (direction, target, policy), value in sorted((runtime_activations or {}).items()):
        activations.add_metric([app_id, direction, target, policy], value)
    for callee, points in sorted(buckets.items()):
        latency.add_metric([app_id, callee], points, sums.get(callee, 0.0))
    registry = CollectorRegistry()
    registry.register(_Families([sent, recv, latency, activations]))
    return generate_latest(registry)


class MetricsServer:
    """``GET /metrics`` on ``socket_path``; ``admin_socket`` is Envoy's admin."""

    def __init__(
        self,
        metrics: RuntimeMetrics,
        socket_path: Path,
        admin_socket: Path | None,
        workers: Sequence[Path] = (),
    ) -> None:
        self._metrics = metrics
        # --runtime-workers: the workers' metrics sockets, folded in (metrics_fold.py).
        self._workers = tuple(workers)
        self._socket = socket_path
        self._admin = admin_socket
        self._server: HttpApiServer | None = None

    async def _envoy(self) -> str:
        if self._admin is None:
            return ""
        try:
            return (await admin_request(str(self._admin), ENVOY_PROMETHEUS, timeout=5)).text()
        except AdminError as exc:
            log.warning("cannot read Envoy's stats: %s", exc)
            return ""

    async def _handle(self, request: ApiRequest) -> ApiResponse:
        if request.path != "/metrics":
            return ApiResponse(status=404, body=b"404: Not Found", content_type=_TEXT)
        if request.method != "GET":
            return ApiResponse(status=405, body=b"405: Method Not Allowed", content_type=_TEXT)
        envoy = await self._envoy()
        body = self._metrics.render()
        if self._metrics.enabled:
            body += invocation_metrics(envoy, self._metrics.app_id, self._metrics.activations)
            if self._workers:
                from tandem.observability.metrics_fold import folded

                body = await folded(body, self._workers)
        body += envoy.encode()
        return ApiResponse(status=200, body=body, content_type=_TEXT)

    async def start(self) -> None:
        self._server = HttpApiServer(
            self._handle,
            app_id=self._metrics.app_id,
            max_body_bytes=_MAX_BODY,
            socket_path=self._socket,
        )
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
