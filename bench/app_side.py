"""What the app-facing flags cost a service invocation, against a plain callee, in one run.

    python bench/app_side.py [--seconds 3] [--rounds 5] [--connections 1]

Callers invoke four callees serving the same fast app: a plain one (the baseline), one with
``--enable-app-health-check`` (invocations take the health-checked cluster, one more local
Envoy hop), one with ``--app-max-concurrency 64`` (a circuit breaker, one Envoy worker), and
one with ``--enable-api-logging`` on the caller (an access log line per call). Prints wrk
figures and the p50 each adds over the plain callee. The cases take turns for ``--rounds``
rounds and each reports its median round (by p50), so load from elsewhere on the machine
falls on every case alike.
"""

from __future__ import annotations

import argparse
import statistics

from _common import TandemMachine, WrkResult, start_fast_app, wait_http, wrk

CASES = (
    ("plain callee (baseline)", (), ()),
    ("callee --enable-app-health-check", ("--enable-app-health-check",), ()),
    ("callee --app-max-concurrency 64", ("--app-max-concurrency", "64"), ()),
    ("caller --enable-api-logging", (), ("--enable-api-logging",)),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1)
    a = ap.parse_args()
    app, app_port = start_fast_app()
    rounds: list[list[WrkResult]] = [[] for _ in CASES]
    try:
        with TandemMachine() as m:
            urls = []
            for i, (_, callee_flags, caller_flags) in enumerate(CASES):
                m.run(f"callee{i}", "--app-port", str(app_port), *callee_flags)
                front = m.run(f"caller{i}", *caller_flags)
                urls.append(f"http://127.0.0.1:{front}/v1.0/invoke/callee{i}/method/x")
                wait_http(urls[-1], 200)
            for _ in range(a.rounds):
                for i, (name, _, _) in enumerate(CASES):
                    rounds[i].append(
                        wrk(name, urls[i], connections=a.connections, seconds=a.seconds)
                    )
    finally:
        app.terminate()
    results = [_median(r) for r in rounds]
    base = results[0]
    print(f"\nconnections={a.connections} seconds={a.seconds} rounds={a.rounds}\n")
    print("| path | req/s | p50 ms | p90 ms | p99 ms | added p50 ms | req/s vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"{r.row()} {r.p50_ms - base.p50_ms:+.3f} | {r.rps / base.rps:.0%} |")


def _median(results: list[WrkResult]) -> WrkResult:
    p50 = statistics.median_low(r.p50_ms for r in results)
    return next(r for r in results if r.p50_ms == p50)


if __name__ == "__main__":
    main()
