"""Invocation with a Resiliency policy vs the plain route, in one run.

    python bench/invoke_resiliency.py [--seconds 5] [--connections 1] [--rounds 2]

One caller sidecar, two callee app ids on the same app: ``plain`` (no policy) and
``guarded`` (per-attempt timeout, 3 retries, a circuit breaker: Envoy's retry_policy,
per_try_timeout and outlier detection). The rounds alternate the order; the ratio is the
guarded route's median p50 over the plain one's.
"""

from __future__ import annotations

from _common import compare_with_plain_route

RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: bench}
spec:
  policies:
    timeouts: {attempt: 5s}
    retries: {three: {policy: constant, duration: 50ms, maxRetries: 3}}
    circuitBreakers: {cb: {trip: consecutiveFailures > 5, timeout: 30s}}
  targets:
    apps:
      guarded: {timeout: attempt, retry: three, circuitBreaker: cb}
"""


def main() -> None:
    compare_with_plain_route(RESILIENCY, "guarded", "with a retry policy")


if __name__ == "__main__":
    main()
