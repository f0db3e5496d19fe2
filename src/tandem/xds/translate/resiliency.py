"""Resiliency for service invocation: the caller's ``targets.apps.<id>`` policy, in Envoy.

Pure. The policy (``tandem.resources.resiliency.app_policy``, the object the runtime uses
for components) becomes, on every route to ``app:<id>`` and on that cluster:

- ``timeouts`` → ``retry_policy.per_try_timeout`` (Dapr's timeout is per attempt); the
  route's ``timeout`` is the whole retry budget, or the timeout itself with no retries;
- ``retries`` → ``retry_policy`` (``num_retries``, ``retry_back_off``); what is retried is
  Dapr's: every failed attempt, or with ``matching`` only the listed codes (connection
  failures, resets and per-try timeouts carry no code and are always retried);
- ``circuitBreakers`` → the cluster's outlier detection: ejected after K consecutive
  failures (``consecutiveFailures > N`` gives K = N + 1) for ``timeout``; with the panic
  threshold at 0 a cluster with no healthy host answers at once (``UH``, which the local
  reply mappers turn into Dapr's JSON error) instead of trying the ejected host anyway.

What Envoy cannot express is said once, at load, by :func:`warnings`.
"""

from __future__ import annotations

from datetime import timedelta

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from tandem.resources import Resiliency, StatusCodes
from tandem.resources.resiliency import Policy
from tandem.xds.translate._protos import pack

# Envoy's exponential back-off starts here (Dapr's exponential policy starts at 500 ms).
EXPONENTIAL_BASE = timedelta(milliseconds=500)
# maxRetries -1: Envoy needs a count; this many is "until the budget runs out" in practice.
UNLIMITED_RETRIES = 1_000_000
# Envoy's default of 3 concurrent retries per cluster would turn retries into overflows
# under load; the per-request count is what the policy limits.
MAX_CONCURRENT_RETRIES = 10_000
# The gRPC statuses Envoy's retry_on can name (code → retry_on condition).
GRPC_RETRY_ON = {
    1: "cancelled",
    4: "deadline-exceeded",
    8: "resource-exhausted",
    13: "internal",
    14: "unavailable",
}
# Attempts without a status code: connect failure, reset, refused stream, per-try timeout.
_NO_STATUS = ("reset", "connect-failure", "refused-stream")
# With no matching, Dapr retries every HTTP status outside 200-399: 5xx via `5xx`, 4xx listed.
_ALL_4XX = tuple(range(400, 500))


def _retries(policy: Policy) -> bool:
    return policy.retry is not None and policy.retry.max_retries != 0


def _duration(value: timedelta) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def _codes(codes: StatusCodes) -> list[int]:
    return sorted({c for r in codes.ranges for c in r})


def _retry_on(policy: Policy) -> tuple[list[str], list[int]]:
    retry = policy.retry
    assert retry is not None
    conditions = list(_NO_STATUS)
    if retry.http_status_codes:
        statuses = _codes(retry.http_status_codes)
    else:
        conditions.append("5xx")
        statuses = list(_ALL_4XX)
    if statuses:
        conditions.append("retriable-status-codes")
    grpc = _codes(retry.grpc_status_codes) if retry.grpc_status_codes else list(GRPC_RETRY_ON)
    conditions += [GRPC_RETRY_ON[c] for c in grpc if c in GRPC_RETRY_ON]
    return conditions, statuses


def _back_off(policy: Policy) -> tuple[timedelta, timedelta]:
    retry = policy.retry
    assert retry is not None
    if retry.policy == "constant":
        return retry.duration, retry.duration
    base = min(EXPONENTIAL_BASE, retry.max_interval)
    return base, retry.max_interval


def _budget(policy: Policy) -> timedelta:
    """The route timeout: every attempt's timeout plus the longest waits between them
    (Envoy's jittered back-off never waits longer than ``min((2^k - 1) * base, max)``)."""
    assert policy.timeout is not None
    if policy.retry is None or not _retries(policy):
        return policy.timeout
    retries = policy.retry.max_retries
    if retries < 0:
        return timedelta(0)  # unlimited retries: no overall deadline, as Dapr
    base, cap = _back_off(policy)
    waits = sum((min(base * ((1 << k) - 1), cap) for k in range(1, retries + 1)), timedelta(0))
    return policy.timeout * (retries + 1) + waits


def apply_to_route(action: rc.RouteAction, policy: Policy) -> None:
    """Timeout and retries on one invoke route's action (left alone without a policy)."""
    if policy.timeout is not None:
        action.timeout.CopyFrom(_duration(_budget(policy)))
    retry = policy.retry
    if retry is None or not _retries(policy):
        return
    conditions, statuses = _retry_on(policy)
    base, cap = _back_off(policy)
    retry_policy = rc.RetryPolicy(
        retry_on=",".join(conditions),
        num_retries=wrappers_pb2.UInt32Value(
            value=retry.max_retries if retry.max_retries >= 0 else UNLIMITED_RETRIES
        ),
        retriable_status_codes=statuses,
        retry_back_off=rc.RetryPolicy.RetryBackOff(
            base_interval=_duration(max(base, timedelta(milliseconds=1))),
            max_interval=_duration(max(cap, timedelta(milliseconds=1))),
        ),
        # Another instance first, as Dapr's retries would pick one (a lone instance is reused).
        retry_host_predicate=[
            rc.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=3,
    )
    if policy.timeout is not None:
        retry_policy.per_try_timeout.CopyFrom(_duration(policy.timeout))
    action.retry_policy.CopyFrom(retry_policy)


def _sweep_interval(open_for: timedelta) -> timedelta:
    """How often Envoy looks for hosts to bring back: a host returns within this much
    after ``timeout``, so small against it, but not a busy loop."""
    return min(max(open_for / 10, timedelta(milliseconds=100)), timedelta(seconds=1))


def apply_to_cluster(cluster: cluster_pb2.Cluster, policy: Policy) -> None:
    """Outlier detection for a circuit breaker; room for concurrent retries."""
    if _retries(policy):
        cluster.circuit_breakers.CopyFrom(
            circuit_breaker_pb2.CircuitBreakers(
                thresholds=[
                    circuit_breaker_pb2.CircuitBreakers.Thresholds(
                        priority=base_pb2.DEFAULT,
                        max_retries=wrappers_pb2.UInt32Value(value=MAX_CONCURRENT_RETRIES),
                    )
                ]
            )
        )
    breaker = policy.circuit_breaker
    if breaker is None:
        return
    threshold = breaker.trip.consecutive_threshold
    # The parser refuses app breakers without one; an actor or component breaker never
    # reaches here.
    assert threshold is not None
    open_for = max(breaker.timeout, timedelta(milliseconds=1))
    cluster.outlier_detection.CopyFrom(
        outlier_detection_pb2.OutlierDetection(
            consecutive_5xx=wrappers_pb2.UInt32Value(value=threshold),
            enforcing_consecutive_5xx=wrappers_pb2.UInt32Value(value=100),
            # Only the consecutive-failure detector: the others are Envoy's, not Dapr's.
            enforcing_success_rate=wrappers_pb2.UInt32Value(value=0),
            enforcing_consecutive_gateway_failure=wrappers_pb2.UInt32Value(value=0),
            enforcing_failure_percentage=wrappers_pb2.UInt32Value(value=0),
            interval=_duration(_sweep_interval(open_for)),
            base_ejection_time=_duration(open_for),
            # Every ejection lasts `timeout` (Envoy would otherwise multiply it each time).
            max_ejection_time=_duration(open_for),
            max_ejection_percent=wrappers_pb2.UInt32Value(value=100),
        )
    )
    # With every host ejected, fail fast instead of Envoy's panic mode (which would send
    # to the ejected hosts anyway).
    cluster.common_lb_config.healthy_panic_threshold.CopyFrom(percent_pb2.Percent(value=0))


def warnings(resiliency: Resiliency) -> list[str]:
    """What this Resiliency asks of invocations that Envoy cannot do, one line each."""
    out: list[str] = []
    used: dict[str, str] = {}
    for app_id, target in resiliency.apps.items():
        names = target.policies
        if names.circuit_breaker is not None:
            used.setdefault(names.circuit_breaker, app_id)
        if target.circuit_breaker_cache_size is not None:
            out.append(
                f"{resiliency.source}: spec.targets.apps.{app_id}.circuitBreakerCacheSize is "
                "ignored: Envoy keeps one circuit breaker per called app"
            )
        retry = resiliency.retries.get(names.retry) if names.retry else None
        if retry is not None and retry.grpc_status_codes:
            odd = [c for c in _codes(retry.grpc_status_codes) if c not in GRPC_RETRY_ON]
            if odd:
                out.append(
                    f"{resiliency.source}: spec.policies.retries.{names.retry}.matching."
                    f"gRPCStatusCodes: Envoy can retry gRPC invocations only on codes "
                    f"{', '.join(map(str, GRPC_RETRY_ON))}; {', '.join(map(str, odd))} "
                    f"will not be retried (used by targets.apps.{app_id})"
                )
    for name, app_id in sorted(used.items()):
        breaker = resiliency.circuit_breakers[name]
        field = f"{resiliency.source}: spec.policies.circuitBreakers.{name}"
        if breaker.max_requests is not None:
            out.append(
                f"{field}.maxRequests is ignored for invocations (targets.apps.{app_id}): "
                "Envoy has no half-open state; after `timeout` every request reaches the app"
            )
        if breaker.interval:
            out.append(
                f"{field}.interval is ignored for invocations (targets.apps.{app_id}): "
                "Envoy counts consecutive failures, which any success resets"
            )
    return out


__all__ = ["apply_to_cluster", "apply_to_route", "warnings"]
