"""Invocation with an HTTPRoute and a BackendTrafficPolicy vs the plain route, in one run.

    python bench/invoke_traffic.py [--seconds 5] [--connections 1] [--rounds 2]

One caller sidecar, two callee app ids on the same app: ``plain`` (no policy) and
``routed``, reached through an HTTPRoute rule (a path match, a header filter, a 100 %
weighted backend) with a BackendTrafficPolicy on that route (a local rate limit far above
the load, thresholds, retries and a timeout: Envoy's local_ratelimit filter, circuit
breakers and retry_policy). The rounds alternate the order; the ratio is the routed
call's median p50 over the plain one's.
"""

from __future__ import annotations

from _common import compare_with_plain_route

TRAFFIC = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench}
spec:
  parentRefs: [{group: "", kind: Service, name: routed}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /x}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-bench, value: routed}]}
    backendRefs: [{name: routed, weight: 100}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: bench}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: bench}]
  rateLimit:
    type: Local
    local: {rules: [{limit: {requests: 1000000, unit: Second}}]}
  circuitBreaker: {maxConnections: 1024, maxParallelRequests: 1024}
  retry: {numRetries: 2, retryOn: {triggers: [connect-failure, reset]}}
  timeout: {http: {requestTimeout: 5s}}
"""


def main() -> None:
    compare_with_plain_route(TRAFFIC, "routed", "HTTPRoute + BackendTrafficPolicy")


if __name__ == "__main__":
    main()
