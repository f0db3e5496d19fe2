"""CPU per state request: a sidecar over ``state.redis`` vs the Redis client alone.

    python bench/state_cpu.py [--seconds 5] [--concurrency 16] [--rounds 3]
                              [--store redis|sqlite]

On a machine busy with other work req/s swings by 2× from run to run, while the CPU time
a request costs moves much less; this bench reports that. Per round, in one run:

- **client alone** (the baseline): redis.asyncio in this process, ``--concurrency``
  workers doing ``HMGET`` (GET) or the same Lua upsert ``state.redis`` runs (SAVE);
  CPU = this process's CPU time / operations. With ``--store sqlite`` (the embedded
  default, which has no client of its own) the baseline is the ``state.sqlite`` component
  itself, called in this process the same way;
- **sidecar**: wrk with ``--concurrency`` connections → Envoy → runtime → Redis
  (``GET /v1.0/state/statestore/k``, ``POST /v1.0/state/statestore`` with one item);
  CPU = the sidecar's processes (runtime and Envoy) / requests, and the runtime's alone;
  ``healthz`` is the floor of the same path with no store call.

Prints medians over the rounds: µs of CPU per request and the ratios sidecar / client.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
from _common import (
    Samples,
    TandemMachine,
    own_cpu,
    post_script,
    resources_folder,
    tree_cpu,
    tree_pids,
    work_folder,
    wrk,
)

from tandem.blocks.state.redis import _SET
from tandem.blocks.state.sqlite import SqliteStateStore
from tandem.blocks.state.store import GetRequest, SetRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import run_redis  # noqa: E402

COMPONENT = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: statestore}}
spec:
  type: state.{store}
  version: v1
  metadata:
  - {{name: {key}, value: '{value}'}}
"""


async def _cpu_per_call(
    call: Callable[[], Awaitable[object]], concurrency: int, seconds: float
) -> float:
    """CPU µs of this process per ``call``, with ``concurrency`` callers for ``seconds``."""
    done = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await call()
            done += 1

    before = own_cpu()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (own_cpu() - before) * 1e6 / done


async def component_alone(path: str, op: str, concurrency: int, seconds: float) -> float:
    """CPU µs per operation of the ``state.sqlite`` component called in this process."""
    store = SqliteStateStore(path)
    await store.set(SetRequest("bench-k", b'{"n":1}'))

    def call() -> Awaitable[object]:
        if op == "GET":
            return store.get(GetRequest("bench-k"))
        return store.set(SetRequest("bench-k", b'{"n":1}'))

    try:
        return await _cpu_per_call(call, concurrency, seconds)
    finally:
        await store.close()


async def client_alone(address: str, op: str, concurrency: int, seconds: float) -> float:
    """CPU µs per operation of redis.asyncio doing the store's own command."""
    host, port = address.rsplit(":", 1)
    client = aioredis.Redis(host=host, port=int(port))
    script = client.register_script(_SET)
    await client.hset("bench-k", mapping={"data": b'{"n":1}', "version": 1})

    def call() -> Awaitable[object]:
        if op == "GET":
            return client.hmget("bench-k", ["data", "version"])
        return script(keys=["bench-k"], args=["", "0", b'{"n":1}', 0])

    try:
        return await _cpu_per_call(call, concurrency, seconds)
    finally:
        await client.aclose()


def sidecar(
    url: str, op: str, pids: list[int], runtime: list[int], args: argparse.Namespace, lua: str
) -> tuple[float, float, float]:
    """(req/s, CPU µs per request of the sidecar, of its runtime alone)."""
    before, before_rt = tree_cpu(pids), tree_cpu(runtime)
    r = wrk(op, url, connections=args.concurrency, seconds=args.seconds, script=lua or None)
    requests = r.rps * args.seconds
    return (
        r.rps,
        (tree_cpu(pids) - before) * 1e6 / requests,
        (tree_cpu(runtime) - before_rt) * 1e6 / requests,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--store", choices=("redis", "sqlite"), default="redis")
    args = ap.parse_args()
    rows = Samples()
    with (
        work_folder("bsc") as work,
        run_redis(work / "redis") as server,
        TandemMachine() as machine,
    ):
        lua = post_script(work / "post.lua", '[{"key": "k", "value": {"n": 1}}]')
        db = str(work / "state.db")
        if args.store == "redis":
            md = {"store": "redis", "key": "redisHost", "value": server.address}
        else:
            md = {"store": "sqlite", "key": "connectionString", "value": db}
        resources = resources_folder(work, statestore=COMPONENT.format(**md))
        port = machine.run("state-cpu", "--resources-path", str(resources))
        root = machine.procs[-1].pid
        runtime = tree_pids([root], "runtime")
        base = f"http://127.0.0.1:{port}/v1.0"
        wrk("warm-up", f"{base}/state/statestore", seconds=1, script=lua)
        for _ in range(args.rounds):
            for op, url, script in (
                ("healthz", f"{base}/healthz", ""),
                ("GET", f"{base}/state/statestore/k", ""),
                ("SAVE", f"{base}/state/statestore", lua),
            ):
                rps, cpu, cpu_rt = sidecar(url, op, [root], runtime, args, script)
                rows.add(f"{op} sidecar req/s", rps)
                rows.add(f"{op} sidecar CPU µs/req", cpu)
                rows.add(f"{op} runtime CPU µs/req", cpu_rt)
                if op != "healthz":
                    if args.store == "redis":
                        alone = asyncio.run(
                            client_alone(server.address, op, args.concurrency, args.seconds)
                        )
                    else:
                        alone = asyncio.run(
                            component_alone(
                                str(work / "alone.db"), op, args.concurrency, args.seconds
                            )
                        )
                    rows.add(f"{op} client alone CPU µs/op", alone)
    med = rows.medians()
    print(f"| figure (median of {args.rounds}, {args.concurrency} in flight) | value |")
    print("|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:,.0f} |")
    print()
    print("| op | sidecar CPU / client CPU | runtime CPU above the healthz floor, µs |")
    print("|---|---|---|")
    for op in ("GET", "SAVE"):
        ratio = med[f"{op} sidecar CPU µs/req"] / med[f"{op} client alone CPU µs/op"]
        above = med[f"{op} runtime CPU µs/req"] - med["healthz runtime CPU µs/req"]
        print(f"| {op} | {ratio:.1f}× | {above:,.0f} |")


if __name__ == "__main__":
    main()
