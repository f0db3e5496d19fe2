"""``kind: Resiliency`` — named timeout/retry/circuit-breaker policies and their targets."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from ._parse import Node
from .common import in_scope, parse_object_meta, parse_scopes
from .trip import Trip, TripError

DEFAULT_TRIP = "consecutiveFailures > 5"

Direction = Literal["outbound", "inbound"]


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
    max_requests: int | None = None  # probes allowed while half-open; None: not set (1)
    interval: timedelta = timedelta(0)  # 0: counts are never cleared while closed
    timeout: timedelta = timedelta(seconds=60)  # how long it stays open
    trip: Trip = field(default_factory=lambda: Trip.compile(DEFAULT_TRIP))
    source: str = field(default="", compare=False)  # "file: spec.policies.circuitBreakers.x"

    @property
    def half_open_probes(self) -> int:
        return self.max_requests if self.max_requests is not None else 1


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
    trip_node = node.get("trip")
    try:
        trip = Trip.compile(trip_node.text().strip() or DEFAULT_TRIP)
    except TripError as exc:
        raise trip_node.error(str(exc)) from None
    max_requests = node.get("maxRequests").optional_integer()
    if max_requests is not None and max_requests < 0:
        raise node.get("maxRequests").error(f"must be at least 0, got {max_requests}")
    return CircuitBreakerPolicy(
        max_requests=max_requests,
        interval=node.get("interval").duration(timedelta(0)),
        timeout=node.get("timeout").duration(timedelta(seconds=60)),
        trip=trip,
        source=f"{node.file}: {node.path}",
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
    _check_app_breakers(policies.get("circuitBreakers"), cbs, apps)
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


def _check_app_breakers(
    node: Node, cbs: Mapping[str, CircuitBreakerPolicy], apps: Mapping[str, AppTarget]
) -> None:
    """Invocation breakers become Envoy outlier detection, which counts consecutive
    failures only: any other trip expression is refused rather than half-honoured."""
    used = {
        (t.policies.circuit_breaker, f"targets.apps.{a}")
        for a, t in apps.items()
        if t.policies.circuit_breaker is not None
    }
    used |= {(n, "every app (a default policy)") for n in _defaults(APP_STEMS, "CircuitBreaker")}
    for name, user in sorted(used):
        cb = cbs.get(name)
        if cb is not None and cb.trip.consecutive_threshold is None:
            raise (
                node.get(name)
                .get("trip")
                .error(
                    f"{cb.trip.expression!r} is used by {user}, and invocation circuit breakers "
                    "run in Envoy, which can only count consecutive failures: write "
                    "'consecutiveFailures > N'"
                )
            )


# -- Resolved policies: what applies to one target -------------------------------------


def _defaults(stems: tuple[str, ...], policy: str) -> tuple[str, ...]:
    """Dapr's default policy names for a target, most specific first: ``stems`` such as
    ("StatestoreComponentOutbound", "ComponentOutbound", "Component", "")."""
    return tuple(f"Default{stem}{policy}Policy" for stem in stems)


APP_STEMS = ("App", "")
ACTOR_STEMS = ("Actor", "")


def component_stems(block: str, direction: Direction) -> tuple[str, ...]:
    d = direction.capitalize()
    specific = (f"{block}Component{d}",) if block else ()
    return (*specific, f"Component{d}", "Component", "")


@dataclass(frozen=True, slots=True)
class Policy:
    """The timeout, retry and circuit breaker that apply to one target (each may be None).

    One object whatever enforces it: Envoy for invocation (``tandem.xds.translate.
    resiliency``), the runtime for components and actors (``tandem.blocks.resiliency``).
    """

    timeout: timedelta | None = None  # per attempt
    retry: RetryPolicy | None = None  # maxRetries 0 kept: "never retry" overrides defaults
    circuit_breaker: CircuitBreakerPolicy | None = None
    # Which Resiliency documents the policies came from, for logs.
    sources: tuple[str, ...] = field(default=(), compare=False)

    def __bool__(self) -> bool:
        return any(p is not None for p in (self.timeout, self.retry, self.circuit_breaker))


def _chosen(
    res: Resiliency, names: PolicyNames | None, stems: tuple[str, ...]
) -> tuple[str | None, str | None, str | None]:
    """Policy names one Resiliency gives a target: its explicit names, or (``names`` None)
    the most specific default policy it defines of each kind."""
    if names is not None:
        return names.timeout, names.retry, names.circuit_breaker

    def default(kind: str, section: Mapping[str, Any]) -> str | None:
        return next((n for n in _defaults(stems, kind) if n in section), None)

    return (
        default("Timeout", res.timeouts),
        default("Retry", res.retries),
        default("CircuitBreaker", res.circuit_breakers),
    )


def _resolve(
    resiliencies: Sequence[Resiliency],
    pick: Callable[[Resiliency], PolicyNames | None],
    stems: tuple[str, ...],
) -> Policy:
    timeout: timedelta | None = None
    retry: RetryPolicy | None = None
    breaker: CircuitBreakerPolicy | None = None
    sources: list[str] = []
    # Each kind separately: the first explicit target naming one wins, then the defaults.
    passes = [(r, pick(r)) for r in resiliencies]
    passes = [p for p in passes if p[1] is not None] + [(r, None) for r in resiliencies]
    for res, names in passes:
        t, r, c = _chosen(res, names, stems)
        used = False
        if timeout is None and t is not None:
            timeout, used = res.timeouts[t], True
        if retry is None and r is not None:
            retry, used = res.retries[r], True
        if breaker is None and c is not None:
            breaker, used = res.circuit_breakers[c], True
        if used:
            sources.append(res.source or res.name)
    return Policy(
        timeout=timeout or None,  # 0 means no timeout
        retry=retry,
        circuit_breaker=breaker,
        sources=tuple(dict.fromkeys(sources)),
    )


def app_policy(resiliencies: Sequence[Resiliency], app_id: str) -> Policy:
    """What shapes this sidecar's calls to ``app_id`` (the caller's Resiliency applies)."""
    return _resolve(
        resiliencies, lambda r: t.policies if (t := r.apps.get(app_id)) else None, APP_STEMS
    )


def actor_policy(resiliencies: Sequence[Resiliency], actor_type: str) -> Policy:
    return _resolve(
        resiliencies, lambda r: t.policies if (t := r.actors.get(actor_type)) else None, ACTOR_STEMS
    )


def component_policy(
    resiliencies: Sequence[Resiliency], component: str, direction: Direction, block: str = ""
) -> Policy:
    """Calls to (outbound) or deliveries from (inbound) ``component``; ``block`` is its
    building block as Dapr spells it in default policy names: Statestore, Pubsub, Bindings."""

    def pick(res: Resiliency) -> PolicyNames | None:
        target = res.components.get(component)
        if target is None:
            return None
        return target.outbound if direction == "outbound" else target.inbound

    return _resolve(resiliencies, pick, component_stems(block, direction))
