"""The runtime's metrics under Dapr's names and labels (README "Observability").

One :class:`RuntimeMetrics` per runtime, with its own Prometheus registry (nothing global).
The doors and the blocks record into it; ``render`` gives the Prometheus text that the
sidecar's ``/metrics`` serves beside Envoy's own stats. Latencies are milliseconds, as in
Dapr, in the Configuration's ``latencyDistributionBuckets`` or Dapr's default buckets.
``Configuration.metrics.enabled: false`` gives :data:`NO_METRICS`, which records nothing.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tandem.resources.configuration import Configuration

# Dapr's default latency buckets (ms).
DEFAULT_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250,
    300, 400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)  # fmt: skip


# Dapr's counters whose names end in _total; the others are exported without the suffix.
_TOTAL_NAMES = frozenset(
    {
        "dapr_component_init_fail_total",
        "dapr_runtime_actor_activated_total",
        "dapr_runtime_actor_deactivated_total",
        "dapr_runtime_actor_reminders_fired_total",
        "dapr_runtime_actor_timers_fired_total",
    }
)


_COUNTER_HEADER = re.compile(rb"^# (HELP|TYPE) (dapr_[a-z_]+?)_total ", re.MULTILINE)


def _dapr_header(m: re.Match[bytes]) -> bytes:
    name = m.group(2)
    if f"{name.decode()}_total" in _TOTAL_NAMES:
        name += b"_total"
    return b"# " + m.group(1) + b" " + name + b" "


class _DaprNames(Collector):
    """Dapr's exact names: prometheus_client appends ``_total`` to every counter sample and
    adds ``_created`` series; Dapr's dashboards expect neither (except for names that end
    in ``_total`` in Dapr too)."""

    def __init__(self, inner: CollectorRegistry) -> None:
        self._inner = inner

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():
            total = f"{family.name}_total"
            name = total if family.type == "counter" and total in _TOTAL_NAMES else family.name
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                if family.type == "counter":
                    sample = sample._replace(name=name)
                out.samples.append(sample)
            yield out


class RuntimeMetrics:
    def __init__(
        self,
        app_id: str,
        namespace: str = "default",
        *,
        enabled: bool = True,
        buckets_ms: Sequence[float] = (),
        path_label: bool = False,
    ) -> None:
        self.app_id = app_id
        self.namespace = namespace
        self.enabled = enabled
        self.path_label = path_label
        self.registry = CollectorRegistry(auto_describe=True)  # recorded into
        # The labelled series of the per-request and per-message metrics, by label values:
        # prometheus_client's labels() validates and locks on every call (issue 21: ~7
        # calls per published and delivered message). Series are never removed.
        self._series: dict[tuple[object, ...], tuple[Any, ...]] = {}
        self._exported = CollectorRegistry()
        self._exported.register(_DaprNames(self.registry))
        buckets = tuple(sorted(buckets_ms)) or DEFAULT_BUCKETS_MS
        r = self.registry
        http = ["app_id", "method", "path"]
        self.http_requests = Counter(
            "dapr_http_server_request_count", "HTTP API requests received", http, registry=r
        )
        self.http_responses = Counter(
            "dapr_http_server_response_count",
            "HTTP API responses sent",
            [*http, "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "dapr_http_server_latency",
            "HTTP API latency (ms)",
            [*http, "status"],
            buckets=buckets,
            registry=r,
        )
        grpc = ["app_id", "grpc_server_method", "grpc_server_status"]
        self.grpc_completed = Counter(
            "dapr_grpc_io_server_completed_rpcs", "gRPC API calls completed", grpc, registry=r
        )
        self.grpc_latency = Histogram(
            "dapr_grpc_io_server_server_latency",
            "gRPC API latency (ms)",
            grpc,
            buckets=buckets,
            registry=r,
        )
        self.components_loaded = Gauge(
            "dapr_component_loaded", "Components loaded", ["app_id"], registry=r
        )
        self.component_init_fail = Counter(
            "dapr_component_init_fail", "Components that failed to start",
            ["app_id", "type", "name"], registry=r,
        )  # fmt: skip
        ingress = ["app_id", "component", "namespace", "process_status", "topic"]
        self.pubsub_ingress = Counter(
            "dapr_component_pubsub_ingress_count", "Events delivered to the app", ingress,
            registry=r,
        )  # fmt: skip
        self.pubsub_ingress_latency = Histogram(
            "dapr_component_pubsub_ingress_latencies", "Delivery latency (ms)", ingress,
            buckets=buckets, registry=r,
        )  # fmt: skip
        egress = ["app_id", "component", "namespace", "success", "topic"]
        self.pubsub_egress = Counter(
            "dapr_component_pubsub_egress_count", "Events published", egress, registry=r
        )
        self.pubsub_egress_latency = Histogram(
            "dapr_component_pubsub_egress_latencies", "Publish latency (ms)", egress,
            buckets=buckets, registry=r,
        )  # fmt: skip
        state = ["app_id", "component", "namespace", "operation", "success"]
        self.state_count = Counter(
            "dapr_component_state_count", "State store calls", state, registry=r
        )
        self.state_latency = Histogram(
            "dapr_component_state_latencies", "State store call latency (ms)", state,
            buckets=buckets, registry=r,
        )  # fmt: skip
        # Secret and configuration store calls, labelled as the state store's.
        self.secret_count = Counter(
            "dapr_component_secret_count", "Secret store calls", state, registry=r
        )
        self.secret_latency = Histogram(
            "dapr_component_secret_latencies", "Secret store call latency (ms)", state,
            buckets=buckets, registry=r,
        )  # fmt: skip
        self.configuration_count = Counter(
            "dapr_component_configuration_count", "Configuration store calls", state, registry=r
        )
        self.configuration_latency = Histogram(
            "dapr_component_configuration_latencies", "Configuration store call latency (ms)",
            state, buckets=buckets, registry=r,
        )  # fmt: skip
        binding_in = ["app_id", "component", "namespace", "success"]
        self.input_binding_count = Counter(
            "dapr_component_input_binding_count", "Input binding events", binding_in, registry=r
        )
        self.input_binding_latency = Histogram(
            "dapr_component_input_binding_latencies", "Input binding event latency (ms)",
            binding_in, buckets=buckets, registry=r,
        )  # fmt: skip
        # Tandem's own: how long after its due time a job trigger reached this runtime.
        self.job_lateness = Histogram(
            "tandem_jobs_trigger_lateness", "Job trigger lateness (ms)", ["app_id"],
            buckets=buckets, registry=r,
        )  # fmt: skip
        binding_out = ["app_id", "component", "namespace", "operation", "success"]
        self.output_binding_count = Counter(
            "dapr_component_output_binding_count", "Output binding calls", binding_out, registry=r
        )
        self.output_binding_latency = Histogram(
            "dapr_component_output_binding_latencies", "Output binding call latency (ms)",
            binding_out, buckets=buckets, registry=r,
        )  # fmt: skip
        self.resiliency_loaded = Counter(
            "dapr_resiliency_loaded", "Resiliency policies loaded",
            ["app_id", "name", "namespace"], registry=r,
        )  # fmt: skip
        # Kept apart from the registry: served in one family with the activations Envoy
        # counts for invocations (metrics_server.invocation_metrics).
        self.activations: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.dropped_spans = Gauge(
            "tandem_tracing_dropped_spans",
            "The runtime's spans dropped (queue full or collector unreachable) since start",
            ["app_id"],
            registry=r,
        )
        actor = ["app_id", "actor_type"]
        self.actor_activated = Counter(
            "dapr_runtime_actor_activated", "Actors activated", actor, registry=r
        )
        self.actor_deactivated = Counter(
            "dapr_runtime_actor_deactivated", "Actors deactivated", actor, registry=r
        )
        self.actor_pending_calls = Gauge(
            "dapr_runtime_actor_pending_actor_calls", "Actor calls waiting for their turn",
            actor, registry=r,
        )  # fmt: skip
        self.actor_timers_fired = Counter(
            "dapr_runtime_actor_timers_fired", "Actor timers fired", [*actor, "success"],
            registry=r,
        )  # fmt: skip
        self.actor_reminders_fired = Counter(
            "dapr_runtime_actor_reminders_fired", "Actor reminders fired", [*actor, "success"],
            registry=r,
        )  # fmt: skip
        wf = ["app_id", "namespace"]
        self.workflow_operations = Counter(
            "dapr_runtime_workflow_operation_count", "Workflow operation requests",
            [*wf, "operation", "status"], registry=r,
        )  # fmt: skip
        self.workflow_operation_latency = Histogram(
            "dapr_runtime_workflow_operation_latency", "Workflow operation latency (ms)",
            [*wf, "operation", "status"], buckets=buckets, registry=r,
        )  # fmt: skip
        self.workflow_executions = Counter(
            "dapr_runtime_workflow_execution_count", "Workflow executions ended",
            [*wf, "workflow_name", "status"], registry=r,
        )  # fmt: skip
        self.workflow_execution_latency = Histogram(
            "dapr_runtime_workflow_execution_latency", "Workflow run time to the end (ms)",
            [*wf, "workflow_name", "status"], buckets=buckets, registry=r,
        )  # fmt: skip
        self.workflow_scheduling_latency = Histogram(
            "dapr_runtime_workflow_scheduling_latency", "From start request to first run (ms)",
            [*wf, "workflow_name"], buckets=buckets, registry=r,
        )  # fmt: skip
        self.activity_executions = Counter(
            "dapr_runtime_workflow_activity_execution_count", "Activity executions ended",
            [*wf, "activity_name", "status"], registry=r,
        )  # fmt: skip
        self.activity_execution_latency = Histogram(
            "dapr_runtime_workflow_activity_execution_latency", "Activity run time (ms)",
            [*wf, "activity_name", "status"], buckets=buckets, registry=r,
        )  # fmt: skip
        self.components_loaded.labels(app_id).set(0)

    def watch_dropped_spans(self, count: Callable[[], int]) -> None:
        if self.enabled:
            self.dropped_spans.labels(self.app_id).set_function(count)

    # --- recording (no-ops when metrics are off) ------------------------------------------
    def http(self, method: str, path: str, status: int, ms: float) -> None:
        if not self.enabled:
            return
        path = path if self.path_label else ""
        key = ("http", method, path, str(status))
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self.http_requests.labels(self.app_id, method, path),
                self.http_responses.labels(self.app_id, method, path, str(status)),
                self.http_latency.labels(self.app_id, method, path, str(status)),
            )
        series[0].inc()
        series[1].inc()
        series[2].observe(ms)

    def _count_and_time(
        self, count: Counter, latency: Histogram, labels: tuple[str, ...], ms: float
    ) -> None:
        """One more of ``labels`` in ``count`` and its time in ``latency``. The labelled
        series are kept: prometheus_client's ``labels()`` validates and locks on each call."""
        key = (count, *labels)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (count.labels(*labels), latency.labels(*labels))
        series[0].inc()
        series[1].observe(ms)

    def grpc(self, method: str, status: str, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, method, status)
            self._count_and_time(self.grpc_completed, self.grpc_latency, labels, ms)

    def state(self, component: str, operation: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, operation, _bool(success))
            self._count_and_time(self.state_count, self.state_latency, labels, ms)

    def secret(self, component: str, operation: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, operation, _bool(success))
            self._count_and_time(self.secret_count, self.secret_latency, labels, ms)

    def configuration(self, component: str, operation: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, operation, _bool(success))
            self._count_and_time(self.configuration_count, self.configuration_latency, labels, ms)

    def input_binding(self, component: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, _bool(success))
            self._count_and_time(self.input_binding_count, self.input_binding_latency, labels, ms)

    def job_trigger_lateness(self, ms: float) -> None:
        if not self.enabled:
            return
        self.job_lateness.labels(self.app_id).observe(max(ms, 0.0))

    def output_binding(self, component: str, operation: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, operation, _bool(success))
            self._count_and_time(self.output_binding_count, self.output_binding_latency, labels, ms)

    def egress(self, component: str, topic: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, _bool(success), topic)
            self._count_and_time(self.pubsub_egress, self.pubsub_egress_latency, labels, ms)

    def ingress(self, component: str, topic: str, process_status: str, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, process_status, topic)
            self._count_and_time(self.pubsub_ingress, self.pubsub_ingress_latency, labels, ms)

    def actor_activation(self, actor_type: str, active: bool) -> None:
        """An actor was activated (``active``) or deactivated."""
        if not self.enabled:
            return
        counter = self.actor_activated if active else self.actor_deactivated
        counter.labels(self.app_id, actor_type).inc()

    def actor_waiting(self, actor_type: str, delta: int) -> None:
        if self.enabled:
            self.actor_pending_calls.labels(self.app_id, actor_type).inc(delta)

    def actor_fired(self, actor_type: str, kind: str, success: bool) -> None:
        """A timer (``kind`` timer) or reminder (remind) callback ran."""
        if not self.enabled:
            return
        counter = self.actor_timers_fired if kind == "timer" else self.actor_reminders_fired
        counter.labels(self.app_id, actor_type, str(success).lower()).inc()

    def resiliency_activation(self, direction: str, target: str, policy: str) -> None:
        """A Resiliency policy acted in the runtime: ``target`` as Dapr writes it
        (``component_<name>``, ``actor_<type>``), ``policy`` retry|timeout|circuitbreaker."""
        if self.enabled:
            self.activations[(direction, target, policy)] += 1

    def activations_for(self, direction: str, target: str) -> Callable[[str], None]:
        """The activation callback of one policy runner."""
        return lambda policy: self.resiliency_activation(direction, target, policy)

    def workflow_operation(self, operation: str, success: bool, ms: float) -> None:
        """A workflow API request: create_workflow, get_workflow, add_event, purge_workflow."""
        if self.enabled:
            labels = (self.app_id, self.namespace, operation, "success" if success else "failed")
            self._count_and_time(
                self.workflow_operations, self.workflow_operation_latency, labels, ms
            )

    def workflow_ended(self, name: str, status: str, ms: float) -> None:
        """An instance ended: ``status`` success, failed or terminated."""
        if self.enabled:
            labels = (self.app_id, self.namespace, name, status)
            self._count_and_time(
                self.workflow_executions, self.workflow_execution_latency, labels, ms
            )

    def workflow_scheduled(self, name: str, ms: float) -> None:
        if self.enabled:
            self.workflow_scheduling_latency.labels(self.app_id, self.namespace, name).observe(ms)

    def activity_ended(self, name: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, self.namespace, name, "success" if success else "failed")
            self._count_and_time(
                self.activity_executions, self.activity_execution_latency, labels, ms
            )

    def loaded(self, components: int, resiliencies: Sequence[str] = ()) -> None:
        if not self.enabled:
            return
        self.components_loaded.labels(self.app_id).set(components)
        for name in resiliencies:
            self.resiliency_loaded.labels(self.app_id, name, self.namespace).inc()

    def render(self) -> bytes:
        if not self.enabled:
            return b""
        text = generate_latest(self._exported)
        # The exposition writes every counter's HELP/TYPE as NAME_total: name them as Dapr does.
        return _COUNTER_HEADER.sub(_dapr_header, text)


NO_METRICS = RuntimeMetrics("", enabled=False)


def runtime_metrics(config: Configuration | None, app_id: str, namespace: str) -> RuntimeMetrics:
    settings = config.metrics if config is not None else None
    if settings is not None and not settings.enabled:
        return NO_METRICS
    return RuntimeMetrics(
        app_id,
        namespace,
        buckets_ms=settings.latency_distribution_buckets if settings else (),
        # Dapr's http.increasedCardinality: the request path as a label (one series per key!),
        # only when asked for; otherwise the label is empty.
        path_label=settings.http_increased_cardinality is True if settings else False,
    )


def _bool(value: bool) -> str:
    """A boolean label as Dapr writes it."""
    return "true" if value else "false"
