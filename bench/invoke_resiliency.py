"""Invocation with a Resiliency policy vs the plain route, in one run.

    python bench/invoke_resiliency.py [--seconds 5] [--connections 1] [--rounds 2]

One caller sidecar, two callee app ids on the same app: ``plain`` (no policy) and
``guarded`` (per-attempt timeout, 3 retries, a circuit breaker: Envoy's retry_policy,
per_try_timeout and outlier detection). The rounds alternate the order; the ratio is the
guarded route's median p50 over the plain one's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from _common import TandemMachine, start_fast_app, wait_http, wrk

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
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    app, app_port = start_fast_app()
    resources = Path(tempfile.mkdtemp(prefix="tbres"))
    (resources / "resiliency.yaml").write_text(RESILIENCY)
    p50s: dict[str, list[float]] = {"plain": [], "guarded": []}
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
    plain, guarded = (statistics.median(p50s[k]) for k in ("plain", "guarded"))
    print(
        f"\nmedian p50: plain {plain:.3f} ms, with a retry policy {guarded:.3f} ms "
        f"-> ratio {guarded / plain:.2f}x ({(guarded - plain) * 1000:+.0f} us)"
    )


if __name__ == "__main__":
    main()
