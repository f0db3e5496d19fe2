"""State API over HTTP: GET and SAVE vs the empty answer vs a direct app call.

    python bench/state.py [--seconds 5] [--connections 1 16] [--redis]
                          [--api-transport http ext_proc]

One `tandem run` per API transport (``--api-transport``: the HTTP/1.1 front door and/or
ext_proc; both by default, measured in the same run) with the embedded default
(`state.sqlite`), and with ``--redis`` one more per transport whose `statestore` is
`state.redis` on a throwaway redis-server. For each sidecar wrk measures `GET /v1.0/healthz`
(a runtime answer that does no work: the baseline), `GET /v1.0/state/statestore/k` and
`POST /v1.0/state/statestore` (one small item); the direct app call (wrk → a minimal app,
GET and the same POST) is the latency floor. Prints a table per connection count, the
ratios the goal is stated in: state throughput / healthz throughput (goal ≥ 75 %) and
state p50 − direct p50 (goal ≤ 0.6 ms at one connection), and with both transports the
http / ext_proc throughput ratio of each row.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from _common import (
    TandemMachine,
    WrkResult,
    post_script,
    resources_folder,
    start_fast_app,
    wait_http,
    work_folder,
    wrk,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import run_redis  # noqa: E402

SAVE_BODY = '[{"key":"k","value":{"order":7,"total":42.5,"items":["a","b"]}}]'
REDIS_COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: "{address}"
  - name: redisPassword
    value: ""
"""


@contextlib.contextmanager
def redis_resources(workdir: Path) -> Iterator[Path]:
    """A resources folder whose `statestore` is `state.redis` on a throwaway Redis."""
    with run_redis(workdir / "redis") as server:
        yield resources_folder(workdir, statestore=REDIS_COMPONENT.format(address=server.address))


def seed(http_port: int) -> None:
    """Store `k` once so GET answers 200 with a body (wrk counts 204 as success too)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/v1.0/state/statestore",
        data=SAVE_BODY.encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204, r.status
    wait_http(f"http://127.0.0.1:{http_port}/v1.0/state/statestore/k", 200)


def measure(
    label: str, http_port: int, script: str, connections: int, seconds: int
) -> list[WrkResult]:
    base = f"http://127.0.0.1:{http_port}"
    return [
        wrk(f"{label}: healthz (empty answer)", f"{base}/v1.0/healthz",
            connections=connections, seconds=seconds),
        wrk(f"{label}: state GET", f"{base}/v1.0/state/statestore/k",
            connections=connections, seconds=seconds),
        wrk(f"{label}: state SAVE", f"{base}/v1.0/state/statestore",
            connections=connections, seconds=seconds, script=script),
    ]  # fmt: skip


def report(connections: int, seconds: int, direct: list[WrkResult], rows: list[WrkResult]) -> None:
    direct_get, direct_post = direct
    print(f"\nconnections={connections} seconds={seconds}\n")
    print("| path | req/s | p50 ms | p90 ms | p99 ms | vs healthz req/s | added p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in direct:
        print(f"{r.row()} | |")
    healthz = None
    for r in rows:
        if "healthz" in r.name:
            healthz = r
            print(f"{r.row()} 100 % | {r.p50_ms - direct_get.p50_ms:+.3f} |")
            continue
        assert healthz is not None
        floor = direct_post if "SAVE" in r.name else direct_get
        print(f"{r.row()} {r.rps / healthz.rps:.0%} | {r.p50_ms - floor.p50_ms:+.3f} |")
    print(
        "\n(vs healthz: state req/s / the same sidecar's healthz req/s, goal >= 75 %; "
        "added p50: state p50 - direct p50 of the same verb, goal <= 0.6 ms at 1 connection)"
    )
    by_name = {r.name: r for r in rows}
    pairs = [
        (r, by_name.get(r.name.replace("/http:", "/ext_proc:"))) for r in rows if "/http:" in r.name
    ]
    pairs = [(h, e) for h, e in pairs if e is not None]
    if pairs:
        print("\n| path | http req/s | ext_proc req/s | http / ext_proc | p50 http − ext_proc ms |")
        print("|---|---|---|---|---|")
        for h, e in pairs:
            name = h.name.replace("/http:", ":")
            print(
                f"| {name} | {h.rps:,.0f} | {e.rps:,.0f} | {h.rps / e.rps:.1f}× "
                f"| {h.p50_ms - e.p50_ms:+.3f} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--redis", action="store_true", help="also measure a state.redis store")
    ap.add_argument(
        "--api-transport",
        nargs="+",
        choices=["http", "ext_proc"],
        default=["http", "ext_proc"],
        help="the front door(s) of the Dapr HTTP API to measure (default: both)",
    )
    a = ap.parse_args()
    app, app_port = start_fast_app()
    stack = contextlib.ExitStack()
    try:
        work = stack.enter_context(work_folder("tbs"))
        script = post_script(work / "post.lua", SAVE_BODY)
        # Redis first, so it stops after the sidecar that uses it.
        resources = stack.enter_context(redis_resources(work)) if a.redis else None
        m = stack.enter_context(TandemMachine())
        stores: list[tuple[str, tuple[str, ...]]] = [("sqlite", ())]
        if resources is not None:
            stores.append(("redis", ("--resources-path", str(resources))))
        # Store by store, the transports side by side, so drift hits both alike.
        sidecars = [
            (
                f"{store}/{transport}",
                m.run(
                    f"bench-{store}-{transport.replace('_', '-')}",
                    *extra,
                    "--api-transport",
                    transport,
                ),
            )
            for store, extra in stores
            for transport in a.api_transport
        ]
        for _, port in sidecars:
            seed(port)
        direct_url = f"http://127.0.0.1:{app_port}/x"
        for c in a.connections:
            direct = [
                wrk("direct app call (GET)", direct_url, connections=c, seconds=a.seconds),
                wrk("direct app call (POST)", direct_url, connections=c, seconds=a.seconds,
                    script=script),
            ]  # fmt: skip
            rows = []
            for label, port in sidecars:
                rows += measure(label, port, script, c, a.seconds)
            report(c, a.seconds, direct, rows)
    finally:
        stack.close()
        app.terminate()


if __name__ == "__main__":
    main()
