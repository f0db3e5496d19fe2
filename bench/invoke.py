"""Service invocation: direct app call vs two bare Envoys vs two Tandem sidecars, in one run.

    python bench/invoke.py [--seconds 5] [--connections 1] [--rounds 1]

Prints wrk figures for each path and the latency each adds over the direct call, with the
ratio of Tandem's added p50 to the bare two-Envoy floor's, and the CPU the Envoys of each
path spend per request (robust on a busy machine, where latency is not). With ``--rounds N``
the bare mTLS pair and the Tandem pair alternate N times and the medians are printed.
"""

from __future__ import annotations

import argparse
import statistics

from _common import (
    TandemMachine,
    WrkResult,
    start_fast_app,
    tree_cpu,
    tree_pids,
    wait_http,
    wrk,
)
from envoy_floor import EnvoyPair


def _timed(
    name: str, url: str, envoys: list[int], a: argparse.Namespace
) -> tuple[WrkResult, float]:
    """wrk against ``url`` and the CPU µs the ``envoys`` spent per request meanwhile."""
    before = tree_cpu(envoys)
    result = wrk(name, url, connections=a.connections, seconds=a.seconds)
    used = tree_cpu(envoys) - before
    return result, used * 1e6 / max(result.rps * a.seconds, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument(
        "--envoy-concurrency", type=int, default=0, help="the sidecars' Envoy workers (0: default)"
    )
    a = ap.parse_args()
    app, app_port = start_fast_app()
    rows: list[tuple[WrkResult, float | None]] = []
    latency_ratios: list[float] = []
    cpu_ratios: list[float] = []
    try:
        direct = wrk(
            "direct app call",
            f"http://127.0.0.1:{app_port}/x",
            connections=a.connections,
            seconds=a.seconds,
        )
        rows.append((direct, None))
        pair = EnvoyPair(app_port, mtls=False)
        try:
            wait_http(f"http://127.0.0.1:{pair.front}/x", 200)
            rows.append(
                _timed(
                    "two bare Envoys (plain)",
                    f"http://127.0.0.1:{pair.front}/x",
                    [p.pid for p in pair.procs],
                    a,
                )
            )
        finally:
            pair.close()
        for round_ in range(1, a.rounds + 1):
            suffix = f" #{round_}" if a.rounds > 1 else ""
            pair = EnvoyPair(app_port, mtls=True)
            try:
                wait_http(f"http://127.0.0.1:{pair.front}/x", 200)
                floor = _timed(
                    f"two bare Envoys (mTLS){suffix}",
                    f"http://127.0.0.1:{pair.front}/x",
                    [p.pid for p in pair.procs],
                    a,
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
                envoys = tree_pids([p.pid for p in m.procs], "envoy")
                tandem = _timed(f"two Tandem sidecars{suffix}", url, envoys, a)
            rows += [floor, tandem]
            latency_ratios.append(
                (tandem[0].p50_ms - direct.p50_ms) / (floor[0].p50_ms - direct.p50_ms)
            )
            cpu_ratios.append(tandem[1] / floor[1])
    finally:
        app.terminate()
    print(
        f"\nconnections={a.connections} seconds={a.seconds} rounds={a.rounds} "
        f"envoy-concurrency={a.envoy_concurrency or 'default'}\n"
    )
    print("| path | req/s | p50 ms | p90 ms | p99 ms | added p50 ms | Envoy CPU µs/req |")
    print("|---|---|---|---|---|---|---|")
    for result, cpu in rows:
        spent = f"{cpu:.0f}" if cpu is not None else "—"
        print(f"{result.row()} {result.p50_ms - direct.p50_ms:+.3f} | {spent} |")
    print(
        f"\nTandem added p50 / bare mTLS floor added p50 = "
        f"{statistics.median(latency_ratios):.2f}x (median of {a.rounds}: "
        f"{', '.join(f'{r:.2f}' for r in latency_ratios)})"
    )
    print(
        f"Tandem Envoys' CPU per request / bare mTLS pair's = "
        f"{statistics.median(cpu_ratios):.2f}x (median of {a.rounds}: "
        f"{', '.join(f'{r:.2f}' for r in cpu_ratios)})"
    )


if __name__ == "__main__":
    main()
