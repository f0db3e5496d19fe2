"""HTTPRoute and BackendTrafficPolicy: what is read, and what is refused by file/field/reason."""

from collections.abc import Callable
from datetime import timedelta

import pytest

from tandem.resources import ResourceError, ResourceSet
from tandem.resources.httproute import Backend, Mirror, PathMatch, ValueMatch
from tandem.resources.traffic_policy import RateLimit, Target

Load = Callable[..., ResourceSet]
ExpectError = Callable[..., ResourceError]

CANARY = """
    apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: checkout-split}
    spec:
      parentRefs: [{group: "", kind: Service, name: checkout, port: 80}]
      rules:
      - matches:
        - path: {type: Exact, value: /pay}
          headers: [{name: x-canary, value: "yes"}]
          method: POST
        backendRefs: [{name: checkout-canary, port: 80}]
        filters:
        - type: RequestMirror
          requestMirror: {backendRef: {name: shadow}, percent: 10}
        timeouts: {request: 3s, backendRequest: 1s}
        retry: {codes: [503], attempts: 2, backoff: 50ms}
      - backendRefs:
        - {name: checkout, port: 80, weight: 90}
        - {name: checkout-canary, port: 80, weight: 10}
"""


def test_a_canary_route_is_read(load: Load) -> None:
    (route,) = load(CANARY).http_routes
    assert route.parents == ("checkout",)
    first, second = route.rules
    assert first.matches[0].path == PathMatch("Exact", "/pay")
    assert first.matches[0].headers == (ValueMatch("x-canary", "yes"),)
    assert first.matches[0].method == "POST"
    assert first.mirrors == (Mirror("shadow", 10.0),)
    assert first.request_timeout == timedelta(seconds=3)
    assert first.backend_timeout == timedelta(seconds=1)
    assert first.retry is not None and first.retry.codes == (503,)
    assert second.matches[0].path == PathMatch("PathPrefix", "/")
    assert second.backends == (Backend("checkout", 90), Backend("checkout-canary", 10))


def _route(rule: str, spec_extra: str = "") -> str:
    return f"""
    apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {{name: r}}
    spec:
      parentRefs: [{{name: b}}]{spec_extra}
      rules:
      - {rule}
    """


@pytest.mark.parametrize(
    ("rule", "field", "reason"),
    [
        (
            "backendRefs: [{name: b, weight: ten}]",
            "spec.rules[0].backendRefs[0].weight",
            "expected an integer, got string 'ten'",
        ),
        (
            "filters: [{type: RequestRedirect, requestRedirect: {port: 1}}]",
            "spec.rules[0].filters[0].type",
            "filter RequestRedirect not supported by Tandem",
        ),
        (
            "sessionPersistence: {type: Cookie}",
            "spec.rules[0].sessionPersistence",
            "not supported by Tandem: use a BackendTrafficPolicy",
        ),
        (
            "backendRefs: [{name: b, kind: ServiceImport}]",
            "spec.rules[0].backendRefs[0].kind",
            "must be a Service (an app id)",
        ),
        (
            "matches: [{path: {type: Exact, value: pay}}]",
            "spec.rules[0].matches[0].path.value",
            "must start with '/'",
        ),
        (
            "matches: [{path: {type: Exact, value: /a}}]\n        filters: [{type: URLRewrite, "
            "urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]",
            "spec.rules[0].filters[0].urlRewrite.path.type",
            "ReplacePrefixMatch needs every match of the rule to be a PathPrefix",
        ),
        (
            "matches: [{headers: [{name: x, value: y, kind: z}]}]",
            "spec.rules[0].matches[0].headers[0].kind",
            "unknown field",
        ),
    ],
)
def test_httproute_refusals_name_file_field_and_reason(
    expect_error: ExpectError, rule: str, field: str, reason: str
) -> None:
    expect_error(_route(rule), field, reason)


def test_hostnames_and_gateway_parents_are_refused(expect_error: ExpectError) -> None:
    expect_error(
        _route("backendRefs: [{name: b}]", "\n      hostnames: [a.example]"),
        "spec.hostnames",
        "not supported by Tandem",
    )
    expect_error(
        _route("backendRefs: [{name: b}]").replace(
            "parentRefs: [{name: b}]", "parentRefs: [{name: gw, kind: Gateway}]"
        ),
        "spec.parentRefs[0].kind",
        "GAMMA",
    )


def test_other_kinds_of_the_gateway_group_are_refused(expect_error: ExpectError) -> None:
    expect_error(
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: GRPCRoute
        metadata: {name: g}
        spec: {}
        """,
        "kind",
        "not supported by Tandem",
    )


POLICY = """
    apiVersion: gateway.envoyproxy.io/v1alpha1
    kind: BackendTrafficPolicy
    metadata: {name: p}
    spec:
      targetRefs:
      - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: checkout-split}
      - {group: "", kind: Service, name: orders}
      rateLimit:
        type: Local
        local: {rules: [{limit: {requests: 5, unit: Second}}]}
      faultInjection:
        abort: {httpStatus: 503, percentage: 50}
"""


def test_a_policy_is_read(load: Load) -> None:
    (policy,) = load(POLICY).traffic_policies
    assert policy.targets == (Target("HTTPRoute", "checkout-split"), Target("Service", "orders"))
    assert policy.rate_limit == RateLimit(requests=5, per_seconds=1)
    assert policy.abort is not None and policy.abort.http_status == 503
    assert policy.abort.percentage == 50.0


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        ("type: Local", "type: Global", "spec.rateLimit.type", "only type Local"),
        (
            "rules: [{limit:",
            "rules: [{clientSelectors: [{headers: []}], limit:",
            "spec.rateLimit.local.rules[0].clientSelectors",
            "not supported by Tandem",
        ),
        ("httpStatus: 503", "httpStatus: 700", "spec.faultInjection.abort.httpStatus", "200-599"),
        (
            "faultInjection:",
            "healthCheck: {active: {}}\n      faultInjection:",
            "spec.healthCheck",
            "not supported by Tandem",
        ),
        ("kind: HTTPRoute", "kind: Gateway", "spec.targetRefs[0].kind", "cannot be targeted"),
    ],
)
def test_policy_refusals_name_file_field_and_reason(
    expect_error: ExpectError, old: str, new: str, field: str, reason: str
) -> None:
    assert old in POLICY
    expect_error(POLICY.replace(old, new), field, reason)


def test_a_policy_for_a_route_the_app_does_not_have_is_warned(load: Load) -> None:
    from tandem.xds.translate.traffic import warnings

    loaded = load(POLICY)
    (line,) = warnings(loaded.http_routes, loaded.traffic_policies)
    assert "spec.targetRefs[0]: HTTPRoute 'checkout-split' is not among" in line
    assert loaded.traffic_policies[0].source in line
