from collections.abc import Callable
from datetime import timedelta

import pytest

from tandem.resources import (
    ActorTarget,
    AppTarget,
    CircuitBreakerPolicy,
    ComponentTarget,
    PolicyNames,
    ResourceError,
    ResourceSet,
    RetryPolicy,
)
from tandem.resources.resiliency import app_policy, component_policy
from tandem.resources.trip import Trip, TripError

Load = Callable[..., ResourceSet]
ExpectError = Callable[..., ResourceError]

FULL_RESILIENCY = """
    apiVersion: dapr.io/v1alpha1
    kind: Resiliency
    metadata:
      name: myresiliency
    scopes:
      - app1
      - app2
    spec:
      policies:
        timeouts:
          general: 5s
          important: 60s
          largeResponse: 10s
        retries:
          pubsubRetry:
            policy: constant
            duration: 5s
            maxRetries: 10
          retryForever:
            policy: exponential
            maxInterval: 15s
            maxRetries: -1
          important:
            policy: constant
            duration: 500ms
            maxRetries: 30
            matching:
              httpStatusCodes: "429,500-599"
              gRPCStatusCodes: "1-4,8-11,13,14"
          defaults: {}
        circuitBreakers:
          simpleCB:
            maxRequests: 1
            timeout: 30s
            trip: consecutiveFailures >= 5
          pubsubCB:
            maxRequests: 1
            interval: 8s
            timeout: 45s
            trip: consecutiveFailures > 8
      targets:
        apps:
          appB:
            timeout: general
            retry: important
            circuitBreaker: simpleCB
            circuitBreakerCacheSize: 100
        actors:
          myActorType:
            timeout: general
            retry: important
            circuitBreaker: simpleCB
            circuitBreakerScope: both
            circuitBreakerCacheSize: 5000
        components:
          statestore1:
            outbound:
              timeout: general
              retry: retryForever
              circuitBreaker: simpleCB
          pubsub1:
            outbound:
              retry: pubsubRetry
              circuitBreaker: pubsubCB
            inbound:
              timeout: general
              retry: important
              circuitBreaker: pubsubCB
"""


def test_resiliency_with_all_three_policy_types_loads(load: Load) -> None:
    (res,) = load(FULL_RESILIENCY, app_id="app2").resiliencies
    assert res.name == "myresiliency"
    assert res.scopes == ("app1", "app2")
    assert res.timeouts == {
        "general": timedelta(seconds=5),
        "important": timedelta(seconds=60),
        "largeResponse": timedelta(seconds=10),
    }
    assert res.retries["pubsubRetry"] == RetryPolicy(
        policy="constant", duration=timedelta(seconds=5), max_retries=10
    )
    assert res.retries["retryForever"] == RetryPolicy(
        policy="exponential", max_interval=timedelta(seconds=15), max_retries=-1
    )
    assert res.circuit_breakers["pubsubCB"] == CircuitBreakerPolicy(
        max_requests=1,
        interval=timedelta(seconds=8),
        timeout=timedelta(seconds=45),
        trip=Trip.compile("consecutiveFailures > 8"),
    )
    assert res.apps["appB"] == AppTarget(
        PolicyNames("general", "important", "simpleCB"), circuit_breaker_cache_size=100
    )
    assert res.actors["myActorType"] == ActorTarget(
        PolicyNames("general", "important", "simpleCB"),
        circuit_breaker_scope="both",
        circuit_breaker_cache_size=5000,
    )
    assert res.components["statestore1"] == ComponentTarget(
        outbound=PolicyNames("general", "retryForever", "simpleCB")
    )
    assert res.components["pubsub1"].inbound == PolicyNames("general", "important", "pubsubCB")
    assert res.components["pubsub1"].outbound == PolicyNames(None, "pubsubRetry", "pubsubCB")


def test_retry_status_code_strings_become_ranges(load: Load) -> None:
    (res,) = load(FULL_RESILIENCY).resiliencies
    retry = res.retries["important"]
    assert retry.http_status_codes.ranges == (range(429, 430), range(500, 600))
    assert 429 in retry.http_status_codes
    assert 503 in retry.http_status_codes
    assert 404 not in retry.http_status_codes
    assert [14 in retry.grpc_status_codes, 5 in retry.grpc_status_codes] == [True, False]


def test_retry_and_circuit_breaker_defaults_follow_dapr(load: Load) -> None:
    (res,) = load(
        """
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: defaults}
        spec:
          policies:
            retries: {DefaultRetryPolicy: {}}
            circuitBreakers: {DefaultCircuitBreakerPolicy: {}}
        """
    ).resiliencies
    retry = res.retries["DefaultRetryPolicy"]
    assert retry == RetryPolicy()
    assert (retry.policy, retry.duration, retry.max_interval, retry.max_retries) == (
        "constant",
        timedelta(seconds=5),
        timedelta(seconds=60),
        -1,
    )
    assert not retry.http_status_codes
    breaker = res.circuit_breakers["DefaultCircuitBreakerPolicy"]
    assert breaker == CircuitBreakerPolicy(
        max_requests=None,
        interval=timedelta(0),
        timeout=timedelta(seconds=60),
        trip=Trip.compile("consecutiveFailures > 5"),
    )
    assert breaker.half_open_probes == 1
    assert breaker.trip.consecutive_threshold == 6


def test_resiliency_scoped_to_other_apps_is_dropped(load: Load) -> None:
    assert load(FULL_RESILIENCY, app_id="app3").resiliencies == ()


def _resiliency(policies: str, targets: str = "") -> str:
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: r}\nspec:\n"
        "  policies:\n" + policies + "\n  targets:\n" + (targets or "    apps: {}") + "\n"
    )


POLICIES = """    timeouts: {general: 5s}
    retries: {fast: {policy: constant, duration: 1s}}
    circuitBreakers: {cb: {trip: consecutiveFailures > 3}}"""


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        pytest.param(
            _resiliency(POLICIES, "    apps: {appB: {retry: slow}}"),
            "spec.targets.apps.appB.retry",
            "retry policy 'slow' used by target 'apps.appB' is not defined under"
            " spec.policies.retries",
            id="undefined-retry-in-app",
        ),
        pytest.param(
            _resiliency(POLICIES, "    components: {statestore: {outbound: {timeout: long}}}"),
            "spec.targets.components.statestore.outbound.timeout",
            "timeout policy 'long' used by target 'components.statestore.outbound'",
            id="undefined-timeout-in-component",
        ),
        pytest.param(
            _resiliency(
                POLICIES,
                "    actors: {cart: {circuitBreaker: simpleCB, circuitBreakerScope: id}}",
            ),
            "spec.targets.actors.cart.circuitBreaker",
            "circuitBreaker policy 'simpleCB' used by target 'actors.cart' is not defined",
            id="undefined-cb-in-actor",
        ),
        pytest.param(
            _resiliency(POLICIES, "    actors: {cart: {circuitBreaker: cb}}"),
            "spec.targets.actors.cart.circuitBreakerScope",
            "is required when circuitBreaker is set",
            id="actor-cb-without-scope",
        ),
        pytest.param(
            _resiliency(
                POLICIES, "    actors: {cart: {circuitBreaker: cb, circuitBreakerScope: all}}"
            ),
            "spec.targets.actors.cart.circuitBreakerScope",
            "must be one of id, type, both, got 'all'",
            id="actor-bad-scope",
        ),
        pytest.param(
            _resiliency("    retries: {r: {policy: linear}}"),
            "spec.policies.retries.r.policy",
            "must be one of constant, exponential, got 'linear'",
            id="bad-retry-policy",
        ),
        pytest.param(
            _resiliency("    retries: {r: {maxRetries: three}}"),
            "spec.policies.retries.r.maxRetries",
            "expected an integer, got string 'three'",
            id="max-retries-not-int",
        ),
        pytest.param(
            _resiliency("    retries: {r: {maxRetries: -2}}"),
            "spec.policies.retries.r.maxRetries",
            "must be at least -1",
            id="max-retries-below-minus-one",
        ),
        pytest.param(
            _resiliency("    retries: {r: {duration: 5 sec}}"),
            "spec.policies.retries.r.duration",
            "invalid duration '5 sec'",
            id="bad-retry-duration",
        ),
        pytest.param(
            _resiliency("    retries: {r: {matching: {httpStatusCodes: '5xx'}}}"),
            "spec.policies.retries.r.matching.httpStatusCodes",
            "'5xx' is not a status code or range",
            id="status-code-not-number",
        ),
        pytest.param(
            _resiliency("    retries: {r: {matching: {httpStatusCodes: '500-600'}}}"),
            "spec.policies.retries.r.matching.httpStatusCodes",
            "within 100-599",
            id="http-status-out-of-range",
        ),
        pytest.param(
            _resiliency("    retries: {r: {matching: {gRPCStatusCodes: '14-2'}}}"),
            "spec.policies.retries.r.matching.gRPCStatusCodes",
            "'14-2' must be a code or ascending range within 0-16",
            id="grpc-range-descending",
        ),
        pytest.param(
            _resiliency("    timeouts: {general: 5 seconds}"),
            "spec.policies.timeouts.general",
            "invalid duration",
            id="bad-timeout",
        ),
        pytest.param(
            _resiliency("    timeouts: {general: }"),
            "spec.policies.timeouts.general",
            "is required",
            id="empty-timeout",
        ),
        pytest.param(
            _resiliency("    circuitBreakers: {cb: {maxRequests: '1'}}"),
            "spec.policies.circuitBreakers.cb.maxRequests",
            "expected an integer",
            id="cb-max-requests-string",
        ),
        pytest.param(
            _resiliency("    timeouts: [general]"),
            "spec.policies.timeouts",
            "expected a mapping, got a list",
            id="timeouts-list",
        ),
    ],
)
def test_invalid_resiliency_error_names_file_field_and_reason(
    expect_error: ExpectError, text: str, field: str, reason: str
) -> None:
    expect_error(text, field, reason)


def test_undefined_policy_error_carries_the_reference_line(expect_error: ExpectError) -> None:
    expect_error(
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: r}
        spec:
          policies:
            timeouts: {general: 5s}
          targets:
            apps:
              appB:
                timeout: general
                retry: missing
        """,
        "spec.targets.apps.appB.retry",
        "'missing'",
        name="resiliency.yaml",
        line=11,
    )


@pytest.mark.parametrize(
    ("expression", "threshold"),
    [
        ("consecutiveFailures > 5", 6),
        ("consecutiveFailures >= 3", 3),
        ("5 < consecutiveFailures", 6),
        ("consecutiveFailures > 2 && consecutiveFailures > 4", 5),
        ("totalFailures > 5", None),
        ("consecutiveFailures > 2 && requests > 10", None),
        ("consecutiveFailures == 3", None),  # true once, then false: not a threshold
        ("consecutiveFailures >= 0", None),  # open before any failure
    ],
)
def test_trip_expressions_give_envoy_a_threshold_only_when_they_are_one(
    expression: str, threshold: int | None
) -> None:
    assert Trip.compile(expression).consecutive_threshold == threshold


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("consecutiveFailures >", "not a CEL expression"),
        ("failures > 3", "may use only requests, totalFailures, consecutiveFailures"),
        ("consecutiveFailures + 1", "must be true or false"),
    ],
)
def test_bad_trip_expressions_are_refused(expression: str, reason: str) -> None:
    with pytest.raises(TripError, match=reason):
        Trip.compile(expression)


def test_trip_the_runtime_evaluates_any_expression() -> None:
    trip = Trip.compile("totalFailures > 2 && requests > 3")
    assert not trip.evaluate(requests=3, total_failures=3, consecutive_failures=3)
    assert trip.evaluate(requests=4, total_failures=3, consecutive_failures=0)


def test_app_breaker_envoy_cannot_honour_is_refused_by_file_and_field(
    expect_error: ExpectError,
) -> None:
    expect_error(
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: r}
        spec:
          policies:
            circuitBreakers:
              cb: {trip: "totalFailures > 3"}
          targets:
            apps:
              appB: {circuitBreaker: cb}
        """,
        "spec.policies.circuitBreakers.cb.trip",
        "only count consecutive failures",
    )


def test_component_breaker_may_use_any_counter(load: Load) -> None:
    (res,) = load(
        """
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: r}
        spec:
          policies:
            circuitBreakers:
              cb: {trip: "totalFailures > 3"}
          targets:
            components:
              store: {outbound: {circuitBreaker: cb}}
        """
    ).resiliencies
    policy = component_policy([res], "store", "outbound", "Statestore")
    assert policy.circuit_breaker is not None
    assert policy.circuit_breaker.trip.expression == "totalFailures > 3"


def test_policies_resolve_explicit_targets_first_then_dapr_defaults(load: Load) -> None:
    (res,) = load(
        """
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: r}
        spec:
          policies:
            timeouts: {fast: 1s, DefaultTimeoutPolicy: 9s, DefaultAppTimeoutPolicy: 7s}
            retries:
              three: {maxRetries: 3}
              never: {maxRetries: 0}
              DefaultStatestoreComponentOutboundRetryPolicy: {maxRetries: 2}
          targets:
            apps:
              appB: {retry: three}
              appC: {retry: never, timeout: fast}
        """
    ).resiliencies
    b = app_policy([res], "appB")
    assert (b.timeout, b.retry and b.retry.max_retries) == (timedelta(seconds=7), 3)
    c = app_policy([res], "appC")
    assert (c.timeout, c.retry and c.retry.max_retries) == (timedelta(seconds=1), 0)
    store = component_policy([res], "store", "outbound", "Statestore")
    assert (store.timeout, store.retry and store.retry.max_retries) == (timedelta(seconds=9), 2)
    assert not component_policy([], "store", "outbound", "Statestore")
