"""Service invocation: direct app call vs two bare Envoys vs two Tandem sidecars, in one run.

    python bench/invoke.py [--seconds 5] [--connections 1]

Prints wrk figures for each path and the latency each adds over the direct call, with the
ratio of Tandem's added p50 to the bare two-Envoy floor's.
"""

from __future__ import annotations

import argparse

from _common import TandemMachine, start_fast_app, wait_http, wrk
from envoy_floor import EnvoyPair


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument(
        "--envoy-concurrency", type=int, default=0, help="the sidecars' Envoy workers (0: default)"
    )
    a = ap.parse_args()
    app, app_port = start_fast_app()
    results = []
    try:
        results.append(
            wrk(
                "direct app call",
                f"http://127.0.0.1:{app_port}/x",
                connections=a.connections,
                seconds=a.seconds,
            )
        )
        for mtls in (False, True):
            pair = EnvoyPair(app_port, mtls=mtls)
            try:
                wait_http(f"http://127.0.0.1:{pair.front}/x", 200)
                results.append(
                    wrk(
                        f"two bare Envoys ({'mTLS' if mtls else 'plain'})",
                        f"http://127.0.0.1:{pair.front}/x",
                        connections=a.connections,
                        seconds=a.seconds,
                    )
                )
            finally:
                pair.close()
        with TandemMachine() as m:
            workers = (
                ["--envoy-concurrency", str(a.envoy_concurrency)] if a.envoy_concurrency else []
            )
            m.run("bench-b", "--app-port", str(app_port), *workers)
            front = m.run("bench-a", *workers)
            url = f"http://127.0.0.1:{front}/v1.0/invoke/bench-b/method/x"
            wait_http(url, 200)
            results.append(
                wrk("two Tandem sidecars", url, connections=a.connections, seconds=a.seconds)
            )
    finally:
        app.terminate()
    direct = results[0]
    print(
        f"\nconnections={a.connections} seconds={a.seconds} "
        f"envoy-concurrency={a.envoy_concurrency or 'default'}\n"
    )
    print("| path | req/s | p50 ms | p90 ms | p99 ms | added p50 ms |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"{r.row()} {r.p50_ms - direct.p50_ms:+.3f} |")
    floor = next(r for r in results if "mTLS" in r.name)
    tandem = results[-1]
    added_floor = floor.p50_ms - direct.p50_ms
    added_tandem = tandem.p50_ms - direct.p50_ms
    print(
        f"\nTandem added p50 / bare mTLS floor added p50 = {added_tandem / added_floor:.2f}x "
        f"(total p50 ratio {tandem.p50_ms / floor.p50_ms:.2f}x)"
    )


if __name__ == "__main__":
    main()
