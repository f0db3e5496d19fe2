"""Tracing on (sampling 1.0, a live OTLP/gRPC collector) vs off: invocation and state GET.

    python bench/tracing.py [--seconds 5] [--connections 1]

Two pairs of `tandem run` sidecars in one run, the same minimal app behind both callees:
one pair with a Configuration that samples every request into an OTLP/gRPC collector
(tests/e2e/collectors.py, in this process), one without a Configuration. wrk measures
`GET /v1.0/invoke/<callee>/method/x` (Envoy → Envoy, spans from both Envoys) and
`GET /v1.0/state/statestore/k` (Envoy's span and the runtime's) through each pair's caller.
Prints the table and the traced / untraced p50 ratio of each; spans received at the end.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from pathlib import Path

from _common import TandemMachine, start_fast_app, wait_http, wrk

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from collectors import start_otlp_grpc  # noqa: E402

from tandem.cli.ports import free_port  # noqa: E402

CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {{name: traced}}
spec:
  tracing:
    samplingRate: "1"
    otel: {{endpointAddress: "127.0.0.1:{port}", protocol: grpc}}
"""


def _seed(http_port: int) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/v1.0/state/statestore",
        data=b'[{"key":"k","value":{"order":7}}]',
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1)
    a = ap.parse_args()
    collector = start_otlp_grpc(free_port())
    app, app_port = start_fast_app()
    rows = []
    try:
        with TandemMachine() as m:
            config = m.home / "traced.yaml"
            config.write_text(CONFIG.format(port=collector.port))
            callers = {}
            for label, extra in (("off", ()), ("on (1.0)", ("--config", str(config)))):
                suffix = "t" if extra else "u"
                m.run(f"callee-{suffix}", "--app-port", str(app_port), *extra)
                callers[label] = (m.run(f"caller-{suffix}", *extra), f"callee-{suffix}")
            for label, (port, callee) in callers.items():
                invoke = f"http://127.0.0.1:{port}/v1.0/invoke/{callee}/method/x"
                wait_http(invoke, 200)
                _seed(port)
                for what, url in (("invoke", invoke), ("state GET", f"http://127.0.0.1:{port}/v1.0/state/statestore/k")):  # fmt: skip
                    r = wrk(
                        f"{what}, tracing {label}",
                        url,
                        connections=a.connections,
                        seconds=a.seconds,
                    )
                    rows.append((what, label, r))
    finally:
        app.terminate()
        spans = len(collector.snapshot())
        collector.stop()
    print(f"\nconnections={a.connections} seconds={a.seconds}\n")
    print("| request | tracing | req/s | p50 ms | p90 ms | p99 ms | p50 / off |")
    print("|---|---|---|---|---|---|---|")
    off = {what: r for what, label, r in rows if label == "off"}
    for what, label, r in rows:
        ratio = r.p50_ms / off[what].p50_ms
        print(
            f"| {what} | {label} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p90_ms:.3f} "
            f"| {r.p99_ms:.3f} | {ratio:.2f}× |"
        )
    print(f"\nspans received by the collector: {spans:,}")


if __name__ == "__main__":
    main()
