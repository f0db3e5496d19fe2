"""``kind: Resiliency`` — named timeout/retry/circuit-breaker policies and their targets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from ._parse import Node
from .common import in_scope, parse_object_meta, parse_scopes

DEFAULT_TRIP = "consecutiveFailures > 5"


@dataclass(frozen=True, slots=True)
class StatusCodes:
    """Status codes written as ``"429,500-599"``; empty means "every error retries"."""

    ranges: tuple[range, ...] = ()

    def __contains__(self, code: object) -> bool:
        return any(code in r for r in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    policy: str = "constant"  # constant | exponential
    duration: timedelta = timedelta(seconds=5)  # constant interval
    max_interval: timedelta = timedelta(seconds=60)  # exponential cap
    max_retries: int = -1  # -1 retries forever, 0 never retries
    http_status_codes: StatusCodes = StatusCodes()
    grpc_status_codes: StatusCodes = StatusCodes()


@dataclass(frozen=True, slots=True)
class CircuitBreakerPolicy:
    max_requests: int = 1  # probes allowed while half-open
    interval: timedelta = timedelta(0)  # 0: counts are never cleared while closed
    timeout: timedelta = timedelta(seconds=60)  # how long it stays open
    trip: str = DEFAULT_TRIP  # CEL over requests/totalFailures/consecutiveFailures


@dataclass(frozen=True, slots=True)
class PolicyNames:
    """Which named policies a target uses; None where the target names none."""

    timeout: str | None = None
    retry: str | None = None
    circuit_breaker: str | None = None


@dataclass(frozen=True, slots=True)
class AppTarget:
    policies: PolicyNames
    circuit_breaker_cache_size: int | None = None


@dataclass(frozen=True, slots=True)
class ActorTarget:
    policies: PolicyNames
    circuit_breaker_scope: str | None = None  # id | type | both; set with a circuit breaker
    circuit_breaker_cache_size: int | None = None


@dataclass(frozen=True, slots=True)
class ComponentTarget:
    outbound: PolicyNames | None = None  # sidecar → component
    inbound: PolicyNames | None = None  # component → sidecar → app (pubsub, bindings)


@dataclass(frozen=True, slots=True)
class Resiliency:
    name: str
    namespace: str | None = None
    timeouts: Mapping[str, timedelta] = field(default_factory=dict)
    retries: Mapping[str, RetryPolicy] = field(default_factory=dict)
    circuit_breakers: Mapping[str, CircuitBreakerPolicy] = field(default_factory=dict)
    apps: Mapping[str, AppTarget] = field(default_factory=dict)
    actors: Mapping[str, ActorTarget] = field(default_factory=dict)
    components: Mapping[str, ComponentTarget] = field(default_factory=dict)
    scopes: tuple[str, ...] = ()
    source: str = field(default="", compare=False)

    def is_scoped_for(self, app_id: str) -> bool:
        return in_scope(self.scopes, app_id)


def parse_status_codes(node: Node, low: int, high: int) -> StatusCodes:
    text = node.text().strip()
    if not text:
        return StatusCodes()
    ranges: list[range] = []
    for part in text.split(","):
        part = part.strip()
        first, sep, last = part.partition("-")
        try:
            start = int(first)
            end = int(last) if sep else start
        except ValueError:
            raise node.error(
                f'{part!r} is not a status code or range (write e.g. "429,500-599")'
            ) from None
        if not (low <= start <= end <= high):
            raise node.error(f"{part!r} must be a code or ascending range within {low}-{high}")
        ranges.append(range(start, end + 1))
    return StatusCodes(tuple(ranges))


def _parse_retry(node: Node) -> RetryPolicy:
    matching = node.get("matching")
    return RetryPolicy(
        policy=node.get("policy").choice(("constant", "exponential"), "constant"),
        duration=node.get("duration").duration(timedelta(seconds=5)),
        max_interval=node.get("maxInterval").duration(timedelta(seconds=60)),
        max_retries=node.get("maxRetries").integer(-1, minimum=-1),
        http_status_codes=parse_status_codes(matching.get("httpStatusCodes"), 100, 599),
        grpc_status_codes=parse_status_codes(matching.get("gRPCStatusCodes"), 0, 16),
    )


def _parse_circuit_breaker(node: Node) -> CircuitBreakerPolicy:
    trip = node.get("trip").text().strip() or DEFAULT_TRIP
    return CircuitBreakerPolicy(
        max_requests=node.get("maxRequests").integer(1, minimum=0),
        interval=node.get("interval").duration(timedelta(0)),
        timeout=node.get("timeout").duration(timedelta(seconds=60)),
        trip=trip,
    )


class _Names:
    """The policy names one Resiliency defines, to check every target's references."""

    def __init__(
        self,
        timeouts: Mapping[str, object],
        retries: Mapping[str, object],
        cbs: Mapping[str, object],
    ) -> None:
        self._known = {"timeout": timeouts, "retry": retries, "circuitBreaker": cbs}
        self._section = {
            "timeout": "timeouts",
            "retry": "retries",
            "circuitBreaker": "circuitBreakers",
        }

    def ref(self, target: Node, key: str) -> str | None:
        node = target.get(key)
        name = node.text().strip() or None
        if name is not None and name not in self._known[key]:
            raise node.error(
                f"{key} policy {name!r} used by target {target.path.split('targets.', 1)[-1]!r}"
                f" is not defined under spec.policies.{self._section[key]}"
            )
        return name

    def policies(self, target: Node) -> PolicyNames:
        return PolicyNames(
            timeout=self.ref(target, "timeout"),
            retry=self.ref(target, "retry"),
            circuit_breaker=self.ref(target, "circuitBreaker"),
        )


def _parse_actor(node: Node, names: _Names) -> ActorTarget:
    policies = names.policies(node)
    scope_node = node.get("circuitBreakerScope")
    scope = scope_node.choice(("id", "type", "both"), "") or None
    if policies.circuit_breaker is not None and scope is None:
        raise scope_node.error("is required when circuitBreaker is set (id, type or both)")
    return ActorTarget(
        policies=policies,
        circuit_breaker_scope=scope,
        circuit_breaker_cache_size=node.get("circuitBreakerCacheSize").optional_integer(),
    )


def _parse_component(node: Node, names: _Names) -> ComponentTarget:
    outbound, inbound = node.get("outbound"), node.get("inbound")
    return ComponentTarget(
        outbound=names.policies(outbound) if outbound.present else None,
        inbound=names.policies(inbound) if inbound.present else None,
    )


def parse_resiliency(doc: Node) -> Resiliency:
    meta = parse_object_meta(doc)
    spec = doc.get("spec").require_present()
    policies = spec.get("policies")
    timeouts = {
        name: n.require_present().duration(timedelta(0))
        for name, n in policies.get("timeouts").entries()
    }
    retries = {name: _parse_retry(n) for name, n in policies.get("retries").entries()}
    cbs = {name: _parse_circuit_breaker(n) for name, n in policies.get("circuitBreakers").entries()}
    names = _Names(timeouts, retries, cbs)
    targets = spec.get("targets")
    apps = {
        app: AppTarget(
            policies=names.policies(n),
            circuit_breaker_cache_size=n.get("circuitBreakerCacheSize").optional_integer(),
        )
        for app, n in targets.get("apps").entries()
    }
    actors = {kind: _parse_actor(n, names) for kind, n in targets.get("actors").entries()}
    components = {c: _parse_component(n, names) for c, n in targets.get("components").entries()}
    return Resiliency(
        name=meta.name,
        namespace=meta.namespace,
        timeouts=timeouts,
        retries=retries,
        circuit_breakers=cbs,
        apps=apps,
        actors=actors,
        components=components,
        scopes=parse_scopes(doc),
        source=doc.file,
    )
