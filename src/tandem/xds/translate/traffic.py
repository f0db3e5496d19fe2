"""Traffic policy for service invocation: the caller's HTTPRoutes and BackendTrafficPolicies.

Pure. An HTTPRoute attached to app id P (``parentRefs`` Service P) becomes, for every rule
and match, one Envoy route placed before the plain invocation of P in the caller's
``dapr_http`` (path form ``/v1.0/invoke/P/method/...`` and ``dapr-app-id: P`` form) and
``dapr_grpc`` (proxied gRPC) route tables; a call no rule matches is a plain invocation of
P. The rule's matches apply to the method path, the part after ``/method``.

Precedence, per setting (the most specific source wins, the others are not merged):

- route timeout and retries: HTTPRoute rule (``timeouts``, ``retry``) > BackendTrafficPolicy
  targeting that HTTPRoute > BackendTrafficPolicy targeting app id P > Resiliency
  ``targets.apps.P``;
- rate limit and fault injection: the BackendTrafficPolicy targeting the HTTPRoute, else
  the one targeting P (Resiliency and HTTPRoute have none);
- cluster settings of ``app:B`` (thresholds, load balancer, connect timeout): a
  BackendTrafficPolicy targeting app id B, else one targeting an HTTPRoute with backend B;
  Resiliency's circuit breaker (outlier detection) for B applies alongside, being a
  different Envoy feature.

When two policies of the same rank target the same thing, the first in file order wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2, token_bucket_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from tandem.resources.httproute import (
    HeaderModifier,
    HTTPRoute,
    PathMatch,
    Rule,
    ValueMatch,
)
from tandem.resources.httproute import RouteMatch as Match
from tandem.resources.resiliency import app_policy
from tandem.resources.traffic_policy import BackendTrafficPolicy
from tandem.xds.ir import Mesh, Sidecar
from tandem.xds.translate import resiliency
from tandem.xds.translate._protos import HPO_KEY, downstream_protocol_options, pack, seconds
from tandem.xds.translate.local_reply import APP_ID_FORMAT, invoke_error_body
from tandem.xds.translate.names import HEADER_APP_ID, app_cluster

FAULT_FILTER = "envoy.filters.http.fault"
RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
_INVOKE_BASE = "/v1.0/invoke/{app}/method"


@dataclass(frozen=True, slots=True)
class _Entry:
    """One rule of one HTTPRoute, with what it needs to sort and translate."""

    route: HTTPRoute
    index: int  # the rule's position in its route
    rule: Rule
    match: Match
    order: int  # the route's position in file order


def _precedence(entry: _Entry) -> tuple[int, int, int, int, int, int, int]:
    """Gateway API's order among matches: exact path, then longest prefix (regular
    expressions between the two), method, most headers, most query parameters, then
    file order."""
    path = entry.match.path
    rank = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}[path.type]
    return (
        rank,
        -len(path.value),
        0 if entry.match.method else 1,
        -len(entry.match.headers),
        -len(entry.match.query_params),
        entry.order,
        entry.index,
    )


def _entries(sidecar: Sidecar, parent: str) -> list[_Entry]:
    out = []
    for order, route in enumerate(sidecar.http_routes):
        if parent not in route.parents:
            continue
        for index, rule in enumerate(route.rules):
            out += [_Entry(route, index, rule, m, order) for m in rule.matches]
    return sorted(out, key=_precedence)


def parents(sidecar: Sidecar) -> tuple[str, ...]:
    """App ids some HTTPRoute of this caller attaches to, sorted."""
    return tuple(sorted({p for r in sidecar.http_routes for p in r.parents}))


# -- policies ---------------------------------------------------------------------------


def _policy_for(sidecar: Sidecar, kind: str, name: str) -> BackendTrafficPolicy | None:
    for policy in sidecar.traffic_policies:
        if any(t.kind == kind and t.name == name for t in policy.targets):
            return policy
    return None


def _route_policies(
    sidecar: Sidecar, route: HTTPRoute | None, parent: str
) -> list[BackendTrafficPolicy]:
    """Policies for calls to ``parent`` (through ``route``), most specific first."""
    found = [
        _policy_for(sidecar, "HTTPRoute", route.name) if route is not None else None,
        _policy_for(sidecar, "Service", parent),
    ]
    return [p for p in found if p is not None]


# -- matches ----------------------------------------------------------------------------


def _string(match: ValueMatch) -> string_pb2.StringMatcher:
    if match.type == "RegularExpression":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.value))
    return string_pb2.StringMatcher(exact=match.value)


def _bare(pattern: str) -> str:
    """A user's full-path pattern, made embeddable after the invocation prefix."""
    return pattern.removeprefix("^").removesuffix("$")


def _path_match(path: PathMatch, base: str, out: rc.RouteMatch) -> None:
    if path.type == "RegularExpression":
        out.safe_regex.CopyFrom(
            regex_pb2.RegexMatcher(regex=f"{re.escape(base)}(?:{_bare(path.value)})")
        )
    elif path.type == "Exact":
        out.path = base + path.value
    elif path.value.rstrip("/") == "":
        out.prefix = base + "/"
    else:
        out.path_separated_prefix = base + path.value.rstrip("/")


def _route_match(match: Match, parent: str, *, path_form: bool) -> rc.RouteMatch:
    base = _INVOKE_BASE.format(app=parent) if path_form else ""
    out = rc.RouteMatch()
    _path_match(match.path, base, out)
    if not path_form:
        out.headers.append(
            rc.HeaderMatcher(
                name=HEADER_APP_ID, string_match=string_pb2.StringMatcher(exact=parent)
            )
        )
    if match.method is not None:
        out.headers.append(
            rc.HeaderMatcher(
                name=":method", string_match=string_pb2.StringMatcher(exact=match.method)
            )
        )
    out.headers.extend(
        rc.HeaderMatcher(name=h.name.lower(), string_match=_string(h)) for h in match.headers
    )
    out.query_parameters.extend(
        rc.QueryParameterMatcher(name=q.name, string_match=_string(q)) for q in match.query_params
    )
    return out


# -- actions ----------------------------------------------------------------------------


def _rewrite(
    entry: _Entry, parent: str, *, path_form: bool
) -> regex_pb2.RegexMatchAndSubstitute | None:
    """The path rewrite: the invocation prefix goes (path form), then the rule's URLRewrite."""
    base = re.escape(_INVOKE_BASE.format(app=parent)) if path_form else ""
    rewrite = entry.rule.rewrite
    if rewrite is not None and rewrite.full_path is not None:
        pattern, substitution = "^.*$", rewrite.full_path
    elif rewrite is not None and rewrite.prefix is not None:
        matched = re.escape(entry.match.path.value.rstrip("/"))
        pattern = f"^{base}{matched}/?(.*)$"
        substitution = rewrite.prefix.rstrip("/") + "/\\1"
    elif path_form:
        pattern, substitution = f"^{base}/", "/"
    else:
        return None
    return regex_pb2.RegexMatchAndSubstitute(
        pattern=regex_pb2.RegexMatcher(regex=pattern), substitution=substitution
    )


def _duration(value: timedelta) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def _percent(value: float) -> percent_pb2.FractionalPercent:
    # Millionths keep fractional percentages such as 0.5 exact.
    return percent_pb2.FractionalPercent(
        numerator=round(value * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def _policy_retry(action: rc.RouteAction, policy: BackendTrafficPolicy) -> None:
    retry = policy.retry
    assert retry is not None
    conditions = list(retry.triggers) or ["5xx", "connect-failure", "reset"]
    if retry.status_codes and "retriable-status-codes" not in conditions:
        conditions.append("retriable-status-codes")
    out = rc.RetryPolicy(
        retry_on=",".join(conditions),
        num_retries=wrappers_pb2.UInt32Value(
            value=2 if retry.num_retries is None else retry.num_retries
        ),
        retriable_status_codes=list(retry.status_codes),
    )
    if retry.per_try_timeout is not None:
        out.per_try_timeout.CopyFrom(_duration(retry.per_try_timeout))
    if retry.base_interval is not None:
        base = max(retry.base_interval, timedelta(milliseconds=1))
        out.retry_back_off.CopyFrom(
            rc.RetryPolicy.RetryBackOff(
                base_interval=_duration(base),
                max_interval=_duration(max(retry.max_interval or base * 10, base)),
            )
        )
    action.retry_policy.CopyFrom(out)


def _rule_retry(action: rc.RouteAction, rule: Rule) -> None:
    retry = rule.retry
    if retry is not None:
        conditions = ["connect-failure", "reset"]
        if retry.codes:
            conditions.append("retriable-status-codes")
        out = rc.RetryPolicy(
            retry_on=",".join(conditions),
            num_retries=wrappers_pb2.UInt32Value(
                value=2 if retry.attempts is None else retry.attempts
            ),
            retriable_status_codes=list(retry.codes),
        )
        if retry.backoff is not None:
            base = max(retry.backoff, timedelta(milliseconds=1))
            out.retry_back_off.CopyFrom(
                rc.RetryPolicy.RetryBackOff(
                    base_interval=_duration(base), max_interval=_duration(base * 10)
                )
            )
        action.retry_policy.CopyFrom(out)
    if rule.backend_timeout is not None:
        attempts = 1
        if action.HasField("retry_policy"):
            action.retry_policy.per_try_timeout.CopyFrom(_duration(rule.backend_timeout))
            attempts += action.retry_policy.num_retries.value
        if rule.request_timeout is None:
            # Without `request`, the whole call may take every attempt's full time (an
            # inherited budget could be shorter than one attempt).
            action.timeout.CopyFrom(_duration(rule.backend_timeout * attempts))
    if rule.request_timeout is not None:
        action.timeout.CopyFrom(_duration(rule.request_timeout))


def shape_action(
    action: rc.RouteAction, sidecar: Sidecar, parent: str, route: HTTPRoute | None = None
) -> None:
    """Timeout, retries and hashing from the policies for calls to ``parent``, lowest
    precedence first so the more specific ones overwrite (the rule itself comes after)."""
    resiliency.apply_to_route(action, app_policy(sidecar.resiliencies, parent))
    for policy in reversed(_route_policies(sidecar, route, parent)):
        if policy.request_timeout is not None:
            action.timeout.CopyFrom(_duration(policy.request_timeout))
        if policy.retry is not None:
            _policy_retry(action, policy)
    hashing = _cluster_policy_for_route(sidecar, route, parent)
    if hashing is not None and hashing.load_balancer is not None:
        header = hashing.load_balancer.hash_header
        if header is not None:
            action.hash_policy.append(
                rc.RouteAction.HashPolicy(
                    header=rc.RouteAction.HashPolicy.Header(header_name=header)
                )
            )


def shape_route(
    route: rc.Route, sidecar: Sidecar, parent: str, http_route: HTTPRoute | None = None
) -> None:
    """Rate limit and fault injection on one invocation route (per-route filter configs)."""
    policies = _route_policies(sidecar, http_route, parent)
    limit = next((p for p in policies if p.rate_limit is not None), None)
    if limit is not None:
        assert limit.rate_limit is not None
        requests = limit.rate_limit.requests
        full = base_pb2.RuntimeFractionalPercent(
            default_value=percent_pb2.FractionalPercent(numerator=100)
        )
        route.typed_per_filter_config[RATE_LIMIT_FILTER].CopyFrom(
            pack(
                local_rate_limit_pb2.LocalRateLimit(
                    stat_prefix="tandem_traffic_rate_limit",
                    token_bucket=token_bucket_pb2.TokenBucket(
                        max_tokens=requests,
                        tokens_per_fill=wrappers_pb2.UInt32Value(value=requests),
                        fill_interval=seconds(limit.rate_limit.per_seconds),
                    ),
                    filter_enabled=full,
                    filter_enforced=full,
                )
            )
        )
    fault = next((p for p in policies if p.delay is not None or p.abort is not None), None)
    if fault is not None:
        config = fault_pb2.HTTPFault()
        if fault.delay is not None:
            config.delay.CopyFrom(
                common_fault_pb2.FaultDelay(
                    fixed_delay=_duration(fault.delay.fixed),
                    percentage=_percent(fault.delay.percentage),
                )
            )
        if fault.abort is not None:
            abort = fault_pb2.FaultAbort(percentage=_percent(fault.abort.percentage))
            if fault.abort.http_status is not None:
                abort.http_status = fault.abort.http_status
            else:
                assert fault.abort.grpc_status is not None
                abort.grpc_status = fault.abort.grpc_status
            config.abort.CopyFrom(abort)
        route.typed_per_filter_config[FAULT_FILTER].CopyFrom(pack(config))


def _header_options(
    pairs: tuple[tuple[str, str], ...], *, append: bool
) -> list[base_pb2.HeaderValueOption]:
    action = (
        base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
        if append
        else base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    )
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=k.lower(), value=v), append_action=action
        )
        for k, v in pairs
    ]


def _modify(route: rc.Route, mod: HeaderModifier | None, *, request: bool) -> None:
    if mod is None:
        return
    options = [*_header_options(mod.set, append=False), *_header_options(mod.add, append=True)]
    removed = [h.lower() for h in mod.remove]
    if request:
        route.request_headers_to_add.extend(options)
        route.request_headers_to_remove.extend(removed)
    else:
        route.response_headers_to_add.extend(options)
        route.response_headers_to_remove.extend(removed)


def _no_backend(entry: _Entry, parent: str) -> rc.DirectResponseAction:
    return rc.DirectResponseAction(
        status=500,
        body_format=invoke_error_body(
            parent, f"no backend of HTTPRoute {entry.route.name} is running"
        ),
    )


def _backends(entry: _Entry, parent: str, mesh: Mesh) -> list[tuple[str, int]]:
    """(app id, weight) of the rule's backends that can take calls: running, weight > 0.
    With no backendRefs, the parent app itself."""
    if not entry.rule.backends:
        return [(parent, 1)]
    return [
        (b.app_id, b.weight)
        for b in entry.rule.backends
        if b.weight > 0 and mesh.instances(b.app_id)
    ]


def _route(
    entry: _Entry, sidecar: Sidecar, mesh: Mesh, parent: str, *, path_form: bool
) -> rc.Route:
    form = "invoke" if path_form else "invoke-header"
    out = rc.Route(
        name=f"{form}:{parent}:httproute:{entry.route.name}:{entry.index}",
        match=_route_match(entry.match, parent, path_form=path_form),
    )
    backends = _backends(entry, parent, mesh)
    if not backends:
        out.direct_response.CopyFrom(_no_backend(entry, parent))
        return out
    # Invocations may stream or long-poll; Envoy's 15 s default would cut them.
    action = rc.RouteAction(timeout=seconds(0))
    if len(backends) == 1:
        action.cluster = app_cluster(backends[0][0])
    else:
        action.weighted_clusters.CopyFrom(
            rc.WeightedCluster(
                clusters=[
                    rc.WeightedCluster.ClusterWeight(
                        name=app_cluster(app), weight=wrappers_pb2.UInt32Value(value=weight)
                    )
                    for app, weight in backends
                ]
            )
        )
    rewrite = _rewrite(entry, parent, path_form=path_form)
    if rewrite is not None:
        action.regex_rewrite.CopyFrom(rewrite)
    rewrite_host = entry.rule.rewrite.hostname if entry.rule.rewrite is not None else None
    if rewrite_host:
        action.host_rewrite_literal = rewrite_host
    shape_action(action, sidecar, parent, entry.route)
    _rule_retry(action, entry.rule)
    for mirror in entry.rule.mirrors:
        if mesh.instances(mirror.app_id):
            action.request_mirror_policies.append(
                rc.RouteAction.RequestMirrorPolicy(
                    cluster=app_cluster(mirror.app_id),
                    runtime_fraction=base_pb2.RuntimeFractionalPercent(
                        default_value=_percent(mirror.percent)
                    ),
                )
            )
    out.route.CopyFrom(action)
    _modify(out, entry.rule.request_headers, request=True)
    _modify(out, entry.rule.response_headers, request=False)
    shape_route(out, sidecar, parent, entry.route)
    return out


def routes(sidecar: Sidecar, mesh: Mesh, *, path_form: bool) -> Iterator[tuple[str, rc.Route]]:
    """(parent app id, route) for every HTTPRoute rule and match of this caller, in
    precedence order per parent, for the path form or the ``dapr-app-id`` form."""
    for parent in parents(sidecar):
        for entry in _entries(sidecar, parent):
            yield parent, _route(entry, sidecar, mesh, parent, path_form=path_form)


# -- clusters and filters ---------------------------------------------------------------


def _cluster_policy_for_route(
    sidecar: Sidecar, route: HTTPRoute | None, app_id: str
) -> BackendTrafficPolicy | None:
    direct = _policy_for(sidecar, "Service", app_id)
    if direct is not None or route is None:
        return direct
    return _policy_for(sidecar, "HTTPRoute", route.name)


def _cluster_policy(sidecar: Sidecar, app_id: str) -> BackendTrafficPolicy | None:
    """The policy shaping cluster ``app:<app_id>``: one targeting the app id, else one
    targeting an HTTPRoute that sends calls to it."""
    direct = _policy_for(sidecar, "Service", app_id)
    if direct is not None:
        return direct
    for route in sidecar.http_routes:
        backends = {b.app_id for rule in route.rules for b in rule.backends}
        if not all(rule.backends for rule in route.rules):
            backends |= set(route.parents)
        if app_id in backends:
            policy = _policy_for(sidecar, "HTTPRoute", route.name)
            if policy is not None:
                return policy
    return None


_LB = {
    "RoundRobin": cluster_pb2.Cluster.ROUND_ROBIN,
    "LeastRequest": cluster_pb2.Cluster.LEAST_REQUEST,
    "Random": cluster_pb2.Cluster.RANDOM,
    "ConsistentHash": cluster_pb2.Cluster.RING_HASH,
}


def apply_to_cluster(cluster: cluster_pb2.Cluster, sidecar: Sidecar, app_id: str) -> None:
    """Thresholds, load balancer and connect timeout of the caller's cluster for ``app_id``."""
    policy = _cluster_policy(sidecar, app_id)
    if policy is None:
        return
    if policy.load_balancer is not None:
        cluster.lb_policy = _LB[policy.load_balancer.type]
    if policy.connect_timeout is not None:
        cluster.connect_timeout.CopyFrom(
            _duration(max(policy.connect_timeout, timedelta(milliseconds=1)))
        )
    breaker = policy.circuit_breaker
    if breaker is None:
        return
    if not cluster.circuit_breakers.thresholds:
        cluster.circuit_breakers.thresholds.append(
            circuit_breaker_pb2.CircuitBreakers.Thresholds(priority=base_pb2.DEFAULT)
        )
    thresholds = cluster.circuit_breakers.thresholds[0]
    if breaker.max_connections is not None or breaker.max_pending_requests is not None:
        # Connection and pending-request limits count HTTP/1 connections: a caller that
        # sets them keeps its own protocol to the peer instead of one shared h2 connection.
        cluster.typed_extension_protocol_options[HPO_KEY].CopyFrom(
            pack(downstream_protocol_options())
        )
    for name, value in (
        ("max_connections", breaker.max_connections),
        ("max_pending_requests", breaker.max_pending_requests),
        ("max_requests", breaker.max_parallel_requests),
        ("max_retries", breaker.max_parallel_retries),
    ):
        if value is not None:
            getattr(thresholds, name).CopyFrom(wrappers_pb2.UInt32Value(value=value))
    if breaker.max_requests_per_connection is not None:
        _max_requests_per_connection(cluster, breaker.max_requests_per_connection)


def _max_requests_per_connection(cluster: cluster_pb2.Cluster, value: int) -> None:
    options = hpo_pb2.HttpProtocolOptions()
    if HPO_KEY in cluster.typed_extension_protocol_options:
        cluster.typed_extension_protocol_options[HPO_KEY].Unpack(options)
    options.common_http_protocol_options.max_requests_per_connection.CopyFrom(
        wrappers_pb2.UInt32Value(value=value)
    )
    cluster.typed_extension_protocol_options[HPO_KEY].CopyFrom(pack(options))


def http_filters(sidecar: Sidecar) -> list[hcm_pb2.HttpFilter]:
    """The fault and local rate limit filters, in the chain only where some policy of this
    caller uses them (each route turns them on with its own config)."""
    out = []
    if any(p.delay is not None or p.abort is not None for p in sidecar.traffic_policies):
        out.append(hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault())))
    if any(p.rate_limit is not None for p in sidecar.traffic_policies):
        out.append(
            hcm_pb2.HttpFilter(
                name=RATE_LIMIT_FILTER,
                typed_config=pack(
                    local_rate_limit_pb2.LocalRateLimit(stat_prefix="tandem_traffic_rate_limit")
                ),
            )
        )
    return out


def _mapper(
    filter: accesslog_pb2.AccessLogFilter, status: int | None, err: str
) -> hcm_pb2.ResponseMapper:
    mapper = hcm_pb2.ResponseMapper(
        filter=filter, body_format_override=invoke_error_body(APP_ID_FORMAT, err)
    )
    if status is not None:
        mapper.status_code.CopyFrom(wrappers_pb2.UInt32Value(value=status))
    return mapper


def _rate_limited() -> accesslog_pb2.AccessLogFilter:
    """A 429 answered by Envoy to an invocation. The local rate limit filter sets its
    response flag only after its reply went through the mappers, so the status and the
    request tell it: invocation routes never reach the runtime, whose own answers are the
    only other local replies on this listener."""
    invocation = accesslog_pb2.AccessLogFilter(
        or_filter=accesslog_pb2.OrFilter(
            filters=[
                accesslog_pb2.AccessLogFilter(
                    header_filter=accesslog_pb2.HeaderFilter(
                        header=rc.HeaderMatcher(
                            name=":path",
                            string_match=string_pb2.StringMatcher(prefix="/v1.0/invoke/"),
                        )
                    )
                ),
                accesslog_pb2.AccessLogFilter(
                    header_filter=accesslog_pb2.HeaderFilter(
                        header=rc.HeaderMatcher(name=HEADER_APP_ID, present_match=True)
                    )
                ),
            ]
        )
    )
    status = accesslog_pb2.AccessLogFilter(
        status_code_filter=accesslog_pb2.StatusCodeFilter(
            comparison=accesslog_pb2.ComparisonFilter(
                op=accesslog_pb2.ComparisonFilter.EQ,
                value=base_pb2.RuntimeUInt32(
                    default_value=429, runtime_key="tandem.local_reply.rate_limited"
                ),
            )
        )
    )
    return accesslog_pb2.AccessLogFilter(
        and_filter=accesslog_pb2.AndFilter(filters=[status, invocation])
    )


def reply_mappers(sidecar: Sidecar) -> list[hcm_pb2.ResponseMapper]:
    """Dapr's JSON error for a rate-limited call (429) and an injected abort (its status),
    where this caller's policies can produce them."""
    out = []
    if any(p.rate_limit is not None for p in sidecar.traffic_policies):
        out.append(_mapper(_rate_limited(), None, "rate limit exceeded (BackendTrafficPolicy)"))
    if any(p.abort is not None for p in sidecar.traffic_policies):
        injected = accesslog_pb2.AccessLogFilter(
            response_flag_filter=accesslog_pb2.ResponseFlagFilter(flags=["FI"])
        )
        out.append(_mapper(injected, None, "fault injected (BackendTrafficPolicy)"))
    return out


def warnings(routes: Sequence[HTTPRoute], policies: Sequence[BackendTrafficPolicy]) -> list[str]:
    """What of an app's traffic policies will do nothing, one line each (logged by the
    runtime at start and on reload, in the app's log)."""
    names = {r.name for r in routes}
    out = []
    for policy in policies:
        for index, target in enumerate(policy.targets):
            if target.kind == "HTTPRoute" and target.name not in names:
                out.append(
                    f"{policy.source}: spec.targetRefs[{index}]: HTTPRoute {target.name!r} is "
                    "not among this app's resources; unless it is in $TANDEM_HOME/resources/, "
                    f"BackendTrafficPolicy {policy.name} does nothing for it"
                )
    return out


__all__ = [
    "warnings",
    "reply_mappers",
    "apply_to_cluster",
    "http_filters",
    "parents",
    "routes",
    "shape_action",
    "shape_route",
]
