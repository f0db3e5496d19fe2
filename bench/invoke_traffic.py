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

import argparse
import statistics
import tempfile
from pathlib import Path

from _common import TandemMachine, start_fast_app, wait_http, wrk

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
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    app, app_port = start_fast_app()
    resources = Path(tempfile.mkdtemp(prefix="tbres"))
    (resources / "traffic.yaml").write_text(TRAFFIC)
    p50s: dict[str, list[float]] = {"plain": [], "routed": []}
    rows = []
    try:
        with TandemMachine() as m:
            for callee in p50s:
                m.run(callee, "--app-port", str(app_port))
            front = m.run("caller", "--resources-path", str(resources))
            urls = {c: f"http://127.0.0.1:{front}/v1.0/invoke/{c}/method/x" for c in p50s}
            for url in urls.values():
                wait_http(url, 200)
            for n in range(a.rounds):
                order = list(p50s) if n % 2 == 0 else list(reversed(p50s))
                for callee in order:
                    r = wrk(
                        f"{callee} (round {n + 1})",
                        urls[callee],
                        connections=a.connections,
                        seconds=a.seconds,
                    )
                    p50s[callee].append(r.p50_ms)
                    rows.append(r)
    finally:
        app.terminate()
    print(f"\nconnections={a.connections} seconds={a.seconds} rounds={a.rounds}\n")
    print("| route | req/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(r.row())
    plain, routed = (statistics.median(p50s[k]) for k in ("plain", "routed"))
    print(
        f"\nmedian p50: plain {plain:.3f} ms, HTTPRoute + BackendTrafficPolicy {routed:.3f} ms "
        f"-> ratio {routed / plain:.2f}x ({(routed - plain) * 1000:+.0f} us)"
    )


if __name__ == "__main__":
    main()
