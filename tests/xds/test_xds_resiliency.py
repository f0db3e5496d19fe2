"""Invocation Resiliency → Envoy: what the golden case does not pin down."""

from __future__ import annotations

import textwrap
from datetime import timedelta

from envoy.config.route.v3 import route_components_pb2 as rc

from tandem.resources import Resiliency
from tandem.resources.loader import parse_text
from tandem.resources.resiliency import app_policy
from tandem.xds.ir import Sidecar
from tandem.xds.translate.resiliency import apply_to_route, warnings


def _resiliency(text: str) -> Resiliency:
    (res,) = parse_text(textwrap.dedent(text), "/res/r.yaml")
    assert isinstance(res, Resiliency)
    return res


RES = """\
    apiVersion: dapr.io/v1alpha1
    kind: Resiliency
    metadata: {name: r}
    spec:
      policies:
        timeouts: {t: 1s}
        retries:
          exp: {policy: exponential, maxInterval: 2s, maxRetries: 3,
                matching: {gRPCStatusCodes: "2,14"}}
        circuitBreakers:
          cb: {maxRequests: 2, interval: 10s, timeout: 30s}
      targets:
        apps:
          b: {timeout: t, retry: exp, circuitBreaker: cb, circuitBreakerCacheSize: 10}
"""


def test_route_budget_covers_every_attempt_and_the_longest_waits() -> None:
    action = rc.RouteAction()
    apply_to_route(action, app_policy([_resiliency(RES)], "b"))
    # 4 attempts of 1 s + waits capped at min((2^k - 1) × 0.5 s, 2 s): 0.5 + 1.5 + 2.
    assert action.timeout.ToTimedelta() == timedelta(seconds=8)
    assert action.retry_policy.per_try_timeout.ToTimedelta() == timedelta(seconds=1)
    assert action.retry_policy.num_retries.value == 3
    # gRPC code 2 (UNKNOWN) is not one Envoy can retry on; 14 is `unavailable`.
    assert action.retry_policy.retry_on.split(",")[-1] == "unavailable"


def test_everything_envoy_cannot_express_is_warned_by_file_and_field() -> None:
    lines = warnings(_resiliency(RES))
    assert all(line.startswith("/res/r.yaml: spec.") for line in lines)
    text = "\n".join(lines)
    for field in (
        "circuitBreakers.cb.maxRequests",
        "circuitBreakers.cb.interval",
        "apps.b.circuitBreakerCacheSize",
        "retries.exp.matching.gRPCStatusCodes",
    ):
        assert field in text


def test_node_metadata_carries_the_callers_resiliency_through_the_same_parser() -> None:
    meta = {
        "app_id": "a",
        "http_port": 3500,
        "grpc_port": 50001,
        "internal_port": 50002,
        "resources": [{"file": "/res/r.yaml", "yaml": textwrap.dedent(RES)}],
    }
    sidecar = Sidecar.from_node_metadata("a~1", meta)
    assert app_policy(sidecar.resiliencies, "b").timeout == timedelta(seconds=1)
    again = Sidecar.from_node_metadata("a~1", sidecar.to_node_metadata())
    assert again == sidecar and again.resiliencies == sidecar.resiliencies


def test_a_broken_resiliency_in_node_metadata_names_file_and_field() -> None:
    meta = {
        "app_id": "a",
        "http_port": 3500,
        "grpc_port": 50001,
        "internal_port": 50002,
        "resources": [{"file": "/res/r.yaml", "yaml": RES.replace("1s}", "soon}")}],
    }
    try:
        Sidecar.from_node_metadata("a~1", meta)
    except ValueError as exc:
        assert "/res/r.yaml" in str(exc) and "spec.policies.timeouts.t" in str(exc)
    else:
        raise AssertionError("a broken Resiliency was accepted")
