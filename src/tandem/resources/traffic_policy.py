"""``kind: BackendTrafficPolicy`` (Envoy Gateway, ``gateway.envoyproxy.io/v1alpha1``).

It targets an HTTPRoute (as in Envoy Gateway) or an app id directly (``group: "", kind:
Service``) and adds what a mesh sidecar does to the calling sidecar's invocations: a local
rate limit, fault injection, connection/request thresholds, the load balancer, retries
and timeouts. Translation into Envoy is ``tandem.xds.translate.traffic``. Fields Tandem
does not compile are refused by file, field and reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from ._fields import only
from ._parse import Node
from .common import parse_object_meta

TargetKind = Literal["HTTPRoute", "Service"]
LoadBalancer = Literal["RoundRobin", "LeastRequest", "Random", "ConsistentHash"]
UNIT_SECONDS = {"Second": 1, "Minute": 60, "Hour": 3600}
# Envoy's retry_on conditions, as Envoy Gateway names its triggers.
RETRY_TRIGGERS = (
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
)


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    name: str  # an HTTPRoute's name or an app id


@dataclass(frozen=True, slots=True)
class RateLimit:
    requests: int
    per_seconds: int


@dataclass(frozen=True, slots=True)
class Delay:
    fixed: timedelta
    percentage: float = 100.0


@dataclass(frozen=True, slots=True)
class Abort:
    http_status: int | None = None
    grpc_status: int | None = None
    percentage: float = 100.0


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_parallel_requests: int | None = None
    max_parallel_retries: int | None = None
    max_requests_per_connection: int | None = None


@dataclass(frozen=True, slots=True)
class LoadBalancing:
    type: LoadBalancer
    hash_header: str | None = None  # ConsistentHash on this header


@dataclass(frozen=True, slots=True)
class Retry:
    num_retries: int | None = None
    triggers: tuple[str, ...] = ()
    status_codes: tuple[int, ...] = ()
    per_try_timeout: timedelta | None = None
    base_interval: timedelta | None = None
    max_interval: timedelta | None = None


@dataclass(frozen=True, slots=True)
class BackendTrafficPolicy:
    name: str
    targets: tuple[Target, ...]
    namespace: str | None = None
    rate_limit: RateLimit | None = None
    delay: Delay | None = None
    abort: Abort | None = None
    circuit_breaker: CircuitBreaker | None = None
    load_balancer: LoadBalancing | None = None
    retry: Retry | None = None
    request_timeout: timedelta | None = None
    connect_timeout: timedelta | None = None
    source: str = field(default="", compare=False)


def _target(node: Node) -> Target:
    only(node, ("group", "kind", "name"), {"sectionName": "a policy applies to a whole route"})
    group = node.get("group").text()
    kind = node.get("kind").required_text()
    name = node.get("name").required_text().strip()
    if kind == "HTTPRoute" and group in ("", "gateway.networking.k8s.io"):
        return Target("HTTPRoute", name)
    if kind == "Service" and group in ("", "core"):
        return Target("Service", name)
    raise node.get("kind").error(
        f"{group or 'core'}/{kind} cannot be targeted: name an HTTPRoute "
        '(group: gateway.networking.k8s.io) or an app id (group: "", kind: Service)'
    )


def _percentage(node: Node) -> float:
    if not node.present:
        return 100.0
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise node.error(f"must be a number from 0 to 100, got {value!r}")
    return float(value)


def _rate_limit(node: Node) -> RateLimit:
    only(node, ("type", "local"), {"global": "a global limit needs a rate limit service"})
    kind = node.get("type").required_text()
    if kind != "Local":
        raise node.get("type").error(
            f"{kind!r} not supported by Tandem: only type Local (each sidecar counts its own calls)"
        )
    local = node.get("local").require_present()
    only(local, ("rules",))
    rules = local.get("rules").items()
    if len(rules) != 1:
        raise local.get("rules").error(
            "Tandem supports exactly one rule (a limit on every call the policy covers)"
        )
    rule = rules[0]
    only(rule, ("limit",), {"clientSelectors": "every call of the target counts toward one limit"})
    limit = rule.get("limit").require_present()
    only(limit, ("requests", "unit"))
    unit = limit.get("unit").require_present().choice(tuple(UNIT_SECONDS), "Second")
    return RateLimit(
        requests=limit.get("requests").require_present().integer(1, minimum=1),
        per_seconds=UNIT_SECONDS[unit],
    )


def _fault(node: Node) -> tuple[Delay | None, Abort | None]:
    only(node, ("delay", "abort"))
    delay_node, abort_node = node.get("delay"), node.get("abort")
    delay = abort = None
    if delay_node.present:
        only(delay_node, ("fixedDelay", "percentage"))
        fixed = delay_node.get("fixedDelay").require_present().duration(timedelta(0))
        delay = Delay(fixed=fixed, percentage=_percentage(delay_node.get("percentage")))
    if abort_node.present:
        only(abort_node, ("httpStatus", "grpcStatus", "percentage"))
        http = abort_node.get("httpStatus").optional_integer()
        grpc = abort_node.get("grpcStatus").optional_integer()
        if (http is None) == (grpc is None):
            raise abort_node.error("set exactly one of httpStatus and grpcStatus")
        if http is not None and not 200 <= http <= 599:
            raise abort_node.get("httpStatus").error(f"must be within 200-599, got {http}")
        if grpc is not None and not 0 <= grpc <= 16:
            raise abort_node.get("grpcStatus").error(f"must be within 0-16, got {grpc}")
        abort = Abort(http, grpc, _percentage(abort_node.get("percentage")))
    if delay is None and abort is None:
        raise node.error("set delay, abort or both")
    return delay, abort


def _circuit_breaker(node: Node) -> CircuitBreaker:
    keys = (
        "maxConnections",
        "maxPendingRequests",
        "maxParallelRequests",
        "maxParallelRetries",
        "maxRequestsPerConnection",
    )
    only(node, keys, {"perEndpoint": "thresholds apply per called app id"})
    values = [node.get(k).optional_integer() for k in keys]
    for key, value in zip(keys, values, strict=True):
        if value is not None and value < 1:
            raise node.get(key).error(f"must be at least 1, got {value}")
    return CircuitBreaker(*values)


def _load_balancer(node: Node) -> LoadBalancing:
    only(
        node,
        ("type", "consistentHash"),
        {"slowStart": "Tandem does not ramp new instances", "zoneAware": "a sidecar has no zone"},
    )
    kind = (
        node.get("type")
        .require_present()
        .choice(("RoundRobin", "LeastRequest", "Random", "ConsistentHash"), "")
    )
    hashing = node.get("consistentHash")
    if kind != "ConsistentHash":
        if hashing.present:
            raise hashing.error("only with type ConsistentHash")
        return LoadBalancing(type=kind)  # type: ignore[arg-type]
    hashing.require_present()
    only(
        hashing,
        ("type", "header"),
        {
            "cookie": "hash on a header",
            "tableSize": "Envoy's default ring is kept",
        },
    )
    hash_type = hashing.get("type").required_text()
    if hash_type != "Header":
        raise hashing.get("type").error(
            f"{hash_type!r} not supported by Tandem: only Header (calls come from one sidecar, "
            "so a source IP would send everything to one instance)"
        )
    header = hashing.get("header").require_present()
    only(header, ("name",))
    return LoadBalancing(type="ConsistentHash", hash_header=header.get("name").required_text())


def _retry(node: Node) -> Retry:
    only(node, ("numRetries", "retryOn", "perRetry"))
    retry_on, per_retry = node.get("retryOn"), node.get("perRetry")
    only(retry_on, ("triggers", "httpStatusCodes"))
    only(per_retry, ("timeout", "backOff"))
    backoff = per_retry.get("backOff")
    only(backoff, ("baseInterval", "maxInterval"))
    triggers = []
    for item in retry_on.get("triggers").items():
        trigger = item.required_text()
        if trigger not in RETRY_TRIGGERS:
            raise item.error(f"unknown trigger {trigger!r} (known: {', '.join(RETRY_TRIGGERS)})")
        triggers.append(trigger)
    codes = []
    for item in retry_on.get("httpStatusCodes").items():
        code = item.integer(0)
        if not 100 <= code <= 599:
            raise item.error(f"must be an HTTP status, got {code}")
        codes.append(code)
    return Retry(
        num_retries=node.get("numRetries").optional_integer(),
        triggers=tuple(triggers),
        status_codes=tuple(codes),
        per_try_timeout=per_retry.get("timeout").optional_duration(),
        base_interval=backoff.get("baseInterval").optional_duration(),
        max_interval=backoff.get("maxInterval").optional_duration(),
    )


def _timeouts(node: Node) -> tuple[timedelta | None, timedelta | None]:
    only(node, ("http", "tcp"))
    http, tcp = node.get("http"), node.get("tcp")
    only(
        http,
        ("requestTimeout",),
        {
            "connectionIdleTimeout": "connections between sidecars are kept by Envoy's defaults",
            "maxConnectionDuration": "connections between sidecars are kept by Envoy's defaults",
        },
    )
    only(tcp, ("connectTimeout",))
    return http.get("requestTimeout").optional_duration(), tcp.get(
        "connectTimeout"
    ).optional_duration()


_REFUSED = {
    "targetSelectors": "name targets with targetRefs",
    "healthCheck": "liveness comes from each sidecar's ADS stream; use a Resiliency circuit breaker",
    "tcpKeepalive": "connections between sidecars are kept by Envoy's defaults",
    "proxyProtocol": "sidecars talk HTTP to each other",
    "useClientProtocol": "the protocol between sidecars is fixed",
    "compression": "not compiled by Tandem",
    "connection": "not compiled by Tandem",
    "dns": "app ids are resolved by the control plane",
    "mergeType": "policies are not merged",
    "responseOverride": "error bodies are Dapr's JSON",
    "http2": "the protocol between sidecars is fixed",
    "requestBuffer": "not compiled by Tandem",
    "telemetry": "use the Configuration's tracing and metrics",
}


def parse_backend_traffic_policy(doc: Node) -> BackendTrafficPolicy:
    only(doc, ("apiVersion", "kind", "metadata", "spec", "status"))
    meta = parse_object_meta(doc)
    spec = doc.get("spec").require_present()
    only(
        spec,
        (
            "targetRef",
            "targetRefs",
            "rateLimit",
            "faultInjection",
            "circuitBreaker",
            "loadBalancer",
            "retry",
            "timeout",
        ),
        _REFUSED,
    )
    targets = [_target(n) for n in spec.get("targetRefs").items()]
    if spec.get("targetRef").present:
        targets.insert(0, _target(spec.get("targetRef")))
    if not targets:
        raise spec.get("targetRefs").error("is required: name an HTTPRoute or an app id")
    rate, fault, breaker, lb, retry, timeout = (
        spec.get(k)
        for k in (
            "rateLimit",
            "faultInjection",
            "circuitBreaker",
            "loadBalancer",
            "retry",
            "timeout",
        )
    )
    delay, abort = _fault(fault) if fault.present else (None, None)
    request_timeout, connect_timeout = _timeouts(timeout) if timeout.present else (None, None)
    return BackendTrafficPolicy(
        name=meta.name,
        namespace=meta.namespace,
        targets=tuple(targets),
        rate_limit=_rate_limit(rate) if rate.present else None,
        delay=delay,
        abort=abort,
        circuit_breaker=_circuit_breaker(breaker) if breaker.present else None,
        load_balancer=_load_balancer(lb) if lb.present else None,
        retry=_retry(retry) if retry.present else None,
        request_timeout=request_timeout,
        connect_timeout=connect_timeout,
        source=doc.file,
    )
