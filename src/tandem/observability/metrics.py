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
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class _Series:
    __slots__ = ("count", "total", "buckets")

    def __init__(self, buckets: int) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * buckets  # per bucket, not cumulative; the last is +Inf


class _Timed(Collector):
    """A count and its latency histogram under the same labels (Dapr pairs them: requests
    and their latency, calls and theirs), kept as plain numbers and turned into Prometheus
    families only when scraped. Recording is a dict lookup and three additions: with
    prometheus_client's Counter and Histogram each request took four lock round trips and
    a label check per metric (~5 µs of the runtime's ~70 µs per state call, issue 21).
    Recorded from the event loop; a lost update between threads would only miscount."""

    def __init__(
        self,
        registry: CollectorRegistry,
        count: tuple[str, str],
        latency: tuple[str, str] | None,
        labels: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        self._count, self._latency, self._labels = count, latency, tuple(labels)
        self._bounds = tuple(float(b) for b in buckets)
        self._les = [floatToGoString(b) for b in self._bounds] + ["+Inf"]
        self._series: dict[tuple[str, ...], _Series] = {}
        registry.register(self)

    def inc(self, labels: tuple[str, ...]) -> None:
        """Count one (for a count without a latency)."""
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = _Series(len(self._les))
        series.count += 1

    def record(self, labels: tuple[str, ...], ms: float) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = _Series(len(self._les))
        series.count += 1
        series.total += ms
        series.buckets[bisect_left(self._bounds, ms)] += 1  # le: the first bound >= ms

    def describe(self) -> Iterator[Metric]:
        yield Metric(*self._count, "counter")
        if self._latency is not None:
            yield Metric(*self._latency, "histogram")

    def collect(self) -> Iterator[Metric]:
        count = Metric(*self._count, "counter")
        latency = None if self._latency is None else Metric(*self._latency, "histogram")
        for values, series in list(self._series.items()):
            labels = dict(zip(self._labels, values, strict=True))
            count.add_sample(self._count[0], labels, series.count)
            if latency is None:
                continue
            name, below = latency.name, 0
            for le, n in zip(self._les, series.buckets, strict=True):
                below += n
                latency.add_sample(f"{name}_bucket", {**labels, "le": le}, below)
            latency.add_sample(f"{name}_count", labels, series.count)
            latency.add_sample(f"{name}_sum", labels, series.total)
        yield count
        if latency is not None:
            yield latency


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
        self._exported = CollectorRegistry()
        self._exported.register(_DaprNames(self.registry))
        buckets = tuple(sorted(buckets_ms)) or DEFAULT_BUCKETS_MS
        r = self.registry
        http = ["app_id", "method", "path"]
        self.http_requests = _Timed(
            r, ("dapr_http_server_request_count", "HTTP API requests received"), None, http,
            buckets,
        )  # fmt: skip
        self.http_responses = _Timed(
            r, ("dapr_http_server_response_count", "HTTP API responses sent"),
            ("dapr_http_server_latency", "HTTP API latency (ms)"), [*http, "status"], buckets,
        )  # fmt: skip
        grpc = ["app_id", "grpc_server_method", "grpc_server_status"]
        self.grpc_calls = _Timed(
            r, ("dapr_grpc_io_server_completed_rpcs", "gRPC API calls completed"),
            ("dapr_grpc_io_server_server_latency", "gRPC API latency (ms)"), grpc, buckets,
        )  # fmt: skip
        self.components_loaded = Gauge(
            "dapr_component_loaded", "Components loaded", ["app_id"], registry=r
        )
        self.component_init_fail = Counter(
            "dapr_component_init_fail", "Components that failed to start",
            ["app_id", "type", "name"], registry=r,
        )  # fmt: skip
        ingress = ["app_id", "component", "namespace", "process_status", "topic"]
        self.pubsub_ingress = _Timed(
            r, ("dapr_component_pubsub_ingress_count", "Events delivered to the app"),
            ("dapr_component_pubsub_ingress_latencies", "Delivery latency (ms)"), ingress,
            buckets,
        )  # fmt: skip
        egress = ["app_id", "component", "namespace", "success", "topic"]
        self.pubsub_egress = _Timed(
            r, ("dapr_component_pubsub_egress_count", "Events published"),
            ("dapr_component_pubsub_egress_latencies", "Publish latency (ms)"), egress, buckets,
        )  # fmt: skip
        state = ["app_id", "component", "namespace", "operation", "success"]
        self.state_calls = _Timed(
            r, ("dapr_component_state_count", "State store calls"),
            ("dapr_component_state_latencies", "State store call latency (ms)"), state, buckets,
        )  # fmt: skip
        # Secret and configuration store calls, labelled as the state store's.
        self.secret_calls = _Timed(
            r, ("dapr_component_secret_count", "Secret store calls"),
            ("dapr_component_secret_latencies", "Secret store call latency (ms)"), state,
            buckets,
        )  # fmt: skip
        self.configuration_calls = _Timed(
            r, ("dapr_component_configuration_count", "Configuration store calls"),
            ("dapr_component_configuration_latencies", "Configuration store call latency (ms)"),
            state, buckets,
        )  # fmt: skip
        binding_in = ["app_id", "component", "namespace", "success"]
        self.input_binding_events = _Timed(
            r, ("dapr_component_input_binding_count", "Input binding events"),
            ("dapr_component_input_binding_latencies", "Input binding event latency (ms)"),
            binding_in, buckets,
        )  # fmt: skip
        # Tandem's own: how long after its due time a job trigger reached this runtime.
        self.job_lateness = Histogram(
            "tandem_jobs_trigger_lateness", "Job trigger lateness (ms)", ["app_id"],
            buckets=buckets, registry=r,
        )  # fmt: skip
        binding_out = ["app_id", "component", "namespace", "operation", "success"]
        self.output_binding_calls = _Timed(
            r, ("dapr_component_output_binding_count", "Output binding calls"),
            ("dapr_component_output_binding_latencies", "Output binding call latency (ms)"),
            binding_out, buckets,
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
        self.workflow_operations = _Timed(
            r, ("dapr_runtime_workflow_operation_count", "Workflow operation requests"),
            ("dapr_runtime_workflow_operation_latency", "Workflow operation latency (ms)"),
            [*wf, "operation", "status"], buckets,
        )  # fmt: skip
        self.workflow_executions = _Timed(
            r, ("dapr_runtime_workflow_execution_count", "Workflow executions ended"),
            ("dapr_runtime_workflow_execution_latency", "Workflow run time to the end (ms)"),
            [*wf, "workflow_name", "status"], buckets,
        )  # fmt: skip
        self.workflow_scheduling_latency = Histogram(
            "dapr_runtime_workflow_scheduling_latency", "From start request to first run (ms)",
            [*wf, "workflow_name"], buckets=buckets, registry=r,
        )  # fmt: skip
        self.activity_executions = _Timed(
            r, ("dapr_runtime_workflow_activity_execution_count", "Activity executions ended"),
            ("dapr_runtime_workflow_activity_execution_latency", "Activity run time (ms)"),
            [*wf, "activity_name", "status"], buckets,
        )  # fmt: skip
        self.components_loaded.labels(app_id).set(0)

    def watch_dropped_spans(self, count: Callable[[], int]) -> None:
        if self.enabled:
            self.dropped_spans.labels(self.app_id).set_function(count)

    # --- recording (no-ops when metrics are off) ------------------------------------------
    def http(self, method: str, path: str, status: int, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, method, path if self.path_label else "")
            self.http_requests.inc(labels)
            self.http_responses.record((*labels, str(status)), ms)

    def grpc(self, method: str, status: str, ms: float) -> None:
        if self.enabled:
            self.grpc_calls.record((self.app_id, method, status), ms)

    def state(self, component: str, operation: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, operation, _bool(success))
            self.state_calls.record(labels, ms)

    def secret(self, component: str, operation: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, operation, _bool(success))
            self.secret_calls.record(labels, ms)

    def configuration(self, component: str, operation: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, operation, _bool(success))
            self.configuration_calls.record(labels, ms)

    def input_binding(self, component: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, _bool(success))
            self.input_binding_events.record(labels, ms)

    def job_trigger_lateness(self, ms: float) -> None:
        if not self.enabled:
            return
        self.job_lateness.labels(self.app_id).observe(max(ms, 0.0))

    def output_binding(self, component: str, operation: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, operation, _bool(success))
            self.output_binding_calls.record(labels, ms)

    def egress(self, component: str, topic: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, _bool(success), topic)
            self.pubsub_egress.record(labels, ms)

    def ingress(self, component: str, topic: str, process_status: str, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, component, self.namespace, process_status, topic)
            self.pubsub_ingress.record(labels, ms)

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
            self.workflow_operations.record(labels, ms)

    def workflow_ended(self, name: str, status: str, ms: float) -> None:
        """An instance ended: ``status`` success, failed or terminated."""
        if self.enabled:
            labels = (self.app_id, self.namespace, name, status)
            self.workflow_executions.record(labels, ms)

    def workflow_scheduled(self, name: str, ms: float) -> None:
        if self.enabled:
            self.workflow_scheduling_latency.labels(self.app_id, self.namespace, name).observe(ms)

    def activity_ended(self, name: str, success: bool, ms: float) -> None:
        if self.enabled:
            labels = (self.app_id, self.namespace, name, "success" if success else "failed")
            self.activity_executions.record(labels, ms)

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
