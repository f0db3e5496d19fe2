"""Pub/sub: publish → delivered throughput and delivery latency per broker, through real
`tandem run` sidecars, against the same broker driven directly in the same run.

    python bench/pubsub.py [--messages 2000] [--concurrency 16] [--latency-messages 200]
                           [--brokers sqlite in-memory redis kafka]

Paths, per broker:
- **tandem**: the bench POSTs ``/v1.0/publish/pubsub/<topic>`` to a publisher sidecar
  (Envoy → ext_proc → CloudEvent → broker); a second sidecar's runtime consumes, routes and
  POSTs each event to the subscriber app (`bench/pubsub_app.py`), which records when it
  arrived. ``in-memory`` is process-local, so there one sidecar publishes and delivers.
  The publishing client (Tandem's own keep-alive HTTP client on uvloop) and the app are
  kept as cheap as a load generator and an app can be: what they cost is not Tandem's,
  and on a 2-core box it is taken from the path. The client's CPU is printed apart.
- **direct** (the baseline): the broker's own client — the Tandem component of that type,
  no sidecar, no HTTP, no envelope — publishing from the bench process and consuming in
  another process (`bench/pubsub_direct_consumer.py`), as the two sidecars do; for
  ``in-memory`` both in the bench process.

Every message carries its send time; latency = arrival − send (one machine, one clock).
Two runs each: ``--latency-messages`` one at a time, each published once the previous one
arrived (unloaded latency; its msg/s is just 1 / round trip), then ``--messages`` with
``--concurrency`` publishes in flight (throughput = messages / (last arrival − first
send), and the latency under that load, queueing included). Prints a table and the
ratios tandem / direct. The loaded run also reports the CPU time per message (user +
system, all processes of the path: the sidecars and the app; the bench publishing plus
the consumer), which moves less than msg/s when the box is busy with other work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import orjson
import uvloop
from _common import TandemMachine, own_cpu, tree_cpu, tree_cpu_by_role

from tandem.blocks import http_client
from tandem.blocks.http_client import HttpPool
from tandem.blocks.pubsub.broker import (
    Message,
    Outcome,
    PublishEntry,
    PubSub,
    SubscribeOptions,
)
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.cli.ports import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import run_redis, run_tansu_process  # noqa: E402

APP = str(Path(__file__).resolve().parent / "pubsub_app.py")
CONSUMER = str(Path(__file__).resolve().parent / "pubsub_direct_consumer.py")
BROKERS = ("sqlite", "in-memory", "redis", "kafka")
Row = list[int]  # [seq, sent ns, arrived ns]
NOT_COUNTED = "(bench publisher, not counted)"


@dataclass(frozen=True)
class Result:
    broker: str
    path: str
    mode: str
    messages: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float | None = None  # CPU per message (loaded run)
    cpu_split: tuple[tuple[str, float], ...] = ()  # per process (loaded run, tandem path)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def row(self) -> str:
        return (
            f"| {self.broker} | {self.path} | {self.mode} | {self.messages:,} | "
            f"{self.rate:,.0f} | {self.p50_ms:.2f} | {self.p99_ms:.2f} | "
            f"{'' if self.cpu_ms is None else f'{self.cpu_ms:.3f}'} |"
        )


def summarize(broker: str, path: str, mode: str, rows: list[Row]) -> Result:
    first: dict[int, tuple[int, int]] = {}
    for seq, sent, arrived in rows:  # the first arrival of each message
        first.setdefault(seq, (sent, arrived))
    lat = sorted((a - s) / 1e6 for s, a in first.values())
    span = (max(a for _, a in first.values()) - min(s for s, _ in first.values())) / 1e9
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return Result(broker, path, mode, len(first), span, statistics.median(lat), p99)


class Consumer(Protocol):
    async def count(self) -> int:
        """How many distinct messages arrived since the last :meth:`take`."""
        ...

    async def take(self, count: int) -> list[Row]:
        """Wait until ``count`` distinct messages arrived; return their rows and forget them."""
        ...


Publish = Callable[[list[bytes]], Awaitable[None]]  # one request: one message, or a bulk


async def drive(
    publish: Publish,
    consumer: Consumer,
    count: int,
    concurrency: int,
    offset: int,
    batch: int = 1,
) -> list[Row]:
    """Publish ``count`` messages (seq from ``offset``) with ``concurrency`` requests in
    flight, ``batch`` messages per request (``--bulk``); ``concurrency=0``: one message at a
    time, each only after the previous one arrived."""
    if concurrency == 0:
        for i in range(count):
            await publish([orjson.dumps({"seq": offset + i, "t": time.time_ns()})])
            while True:  # polling for the arrival (not part of the figure)
                if await consumer.count() > i:
                    break
                await asyncio.sleep(0.0005)
        return await consumer.take(count)
    sem = asyncio.Semaphore(concurrency)

    async def one(first: int) -> None:
        async with sem:
            last = min(first + batch, offset + count)
            t = time.time_ns()
            await publish([orjson.dumps({"seq": seq, "t": t}) for seq in range(first, last)])

    await asyncio.gather(*(one(offset + i) for i in range(0, count, batch)))
    return await consumer.take(count)


# -- the two paths ------------------------------------------------------------------------


class Arrivals:
    """What a recording consumer (`pubsub_app.py` or `pubsub_direct_consumer.py`) got."""

    def __init__(self, port: int, session: aiohttp.ClientSession) -> None:
        self._base = f"http://127.0.0.1:{port}"
        self._session = session

    async def _stats(self, records: bool) -> dict:
        async with self._session.get(f"{self._base}/stats?records={int(records)}") as r:
            return orjson.loads(await r.read())

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self._stats(False)
                return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    sys.exit(f"bench: {self._base} never answered")
            await asyncio.sleep(0.05)  # polling for the consumer to listen, with a deadline

    async def count(self) -> int:
        return int((await self._stats(False))["count"])

    async def take(self, count: int, timeout: float = 120.0) -> list[Row]:
        deadline = time.monotonic() + timeout
        while (await self._stats(False))["count"] < count:
            if time.monotonic() > deadline:
                sys.exit(f"bench: not every message arrived within {timeout:.0f}s")
            await asyncio.sleep(0.02)  # polling the consumer's count, with a deadline
        rows = (await self._stats(True))["records"]
        async with self._session.post(f"{self._base}/reset"):
            pass
        return rows


def http_publisher(pool: HttpPool, topic: str, bulk: bool) -> Publish:
    """Publishes through Tandem's own keep-alive HTTP client (the app channel's): a load
    generator as cheap as the bench app, as wrk is for the other benches (aiohttp's client
    spent ~0.1 ms of CPU per publish, on the box the path shares). ``bulk``: Dapr's bulk
    publish API, one request per batch."""
    single = f"/v1.0/publish/pubsub/{topic}"
    many = f"/v1.0-alpha1/publish/bulk/pubsub/{topic}"
    headers = {"content-type": "application/json"}

    async def publish(bodies: list[bytes]) -> None:
        if bulk:
            target, body = many, orjson.dumps([_bulk_entry(i, b) for i, b in enumerate(bodies)])
        else:
            (body,) = bodies
            target = single
        r = await pool.request("POST", target, body=body, headers=headers, timeout=60.0)
        if r.status != 204:
            sys.exit(f"bench: publish answered {r.status}: {r.body.decode(errors='replace')}")

    return publish


def _bulk_entry(i: int, body: bytes) -> dict[str, object]:
    return {"entryId": str(i), "event": orjson.Fragment(body), "contentType": "application/json"}


class InProcess:
    """Publisher and consumer in this process (the in-memory broker's only possible use)."""

    def __init__(self, broker: PubSub, topic: str) -> None:
        self._broker = broker
        self._topic = topic
        self._rows: list[Row] = []
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        await self._broker.subscribe(self._topic, self._handle, SubscribeOptions())

    async def _handle(self, msg: Message) -> Outcome:
        now = time.time_ns()
        doc = orjson.loads(msg.data)
        self._rows.append([doc["seq"], doc["t"], now])
        self._arrived.set()
        return Outcome.SUCCESS

    async def count(self) -> int:
        return len({r[0] for r in self._rows})

    async def take(self, count: int, timeout: float = 120.0) -> list[Row]:
        async def enough() -> None:
            while len({r[0] for r in self._rows}) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        rows, self._rows = self._rows, []
        return rows


# -- brokers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    name: str
    type: str
    metadata: dict[str, str]
    embedded: bool = False  # the `tandem run` default: no resources folder

    def component_yaml(self) -> str:
        md = "".join(f"  - {{name: {k}, value: '{v}'}}\n" for k, v in self.metadata.items())
        return (
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: pubsub}\n"
            f"spec:\n  type: {self.type}\n  version: v1\n  metadata:\n{md}"
        )


@contextlib.contextmanager
def brokers(names: list[str], workdir: Path) -> Iterator[list[Broker]]:
    with contextlib.ExitStack() as stack:
        out = []
        for name in names:
            if name == "sqlite":
                out.append(Broker(name, "pubsub.sqlite", {}, embedded=True))
            elif name == "in-memory":
                out.append(Broker(name, "pubsub.in-memory", {}))
            elif name == "redis":
                server = stack.enter_context(run_redis(workdir / "redis"))
                out.append(Broker(name, "pubsub.redis", {"redisHost": server.address}))
            elif name == "kafka":
                tansu = stack.enter_context(run_tansu_process(workdir / "tansu"))
                md = {
                    "brokers": tansu.server.brokers,
                    "authType": "none",
                    "sessionTimeout": "6s",
                    "heartbeatInterval": "1s",
                }
                out.append(Broker(name, "pubsub.kafka", md))
        yield out


async def measure_direct(broker: Broker, workdir: Path, args: argparse.Namespace) -> list[Result]:
    """The broker's client publishing in this process, consuming in another one (in-memory:
    the same process, as it cannot be shared)."""
    md = dict(broker.metadata)
    if broker.name == "sqlite":
        md["connectionString"] = str(workdir / "direct-pubsub.db")
    topic = f"direct-{uuid.uuid4().hex[:8]}"
    spec = ComponentSpec("pubsub", broker.type, metadata=md)
    ctx = ComponentContext(app_id="direct", home=workdir)
    publisher: PubSub = create_component(spec, ctx)  # type: ignore[assignment]
    process = None
    if broker.name == "in-memory":
        in_process = InProcess(publisher, topic)
        await in_process.start()
        consumer: Consumer = in_process
    else:
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, CONSUMER, str(port), broker.type, topic, json.dumps(md), str(workdir)
        )
    try:
        async with aiohttp.ClientSession() as session:
            if process is not None:
                stats = Arrivals(port, session)
                await stats.wait_ready()
                consumer = stats

            async def publish(bodies: list[bytes]) -> None:
                if args.bulk:
                    entries = [PublishEntry(str(i), b) for i, b in enumerate(bodies)]
                    if await publisher.bulk_publish(topic, entries):
                        sys.exit("bench: a bulk publish failed")
                else:
                    await publisher.publish(topic, bodies[0], {})

            pids = [] if process is None else [process.pid]
            return await _measure(
                broker.name, "direct", publish, consumer, args, lambda: own_cpu() + tree_cpu(pids)
            )
    finally:
        await publisher.close()
        if process is not None:
            process.terminate()
            await process.wait()


async def _measure(
    broker: str,
    label: str,
    publish: Publish,
    consumer: Consumer,
    args: argparse.Namespace,
    cpu: Callable[[], float],
    split: Callable[[], dict[str, float]] = dict,
) -> list[Result]:
    await drive(publish, consumer, 50, 4, -100_000)  # warm-up (connections, topic, group)
    one = await drive(publish, consumer, args.latency_messages, 0, 0)
    before, split_before = cpu(), split()
    batch = max(1, args.bulk)
    many = await drive(publish, consumer, args.messages, args.concurrency, 1_000_000, batch)
    mode = f"{args.concurrency} in flight" + (f", bulk {args.bulk}" if args.bulk else "")
    loaded = summarize(broker, label, mode, many)
    per_msg = (cpu() - before) * 1000 / args.messages
    per_process = tuple(
        (k, (v - split_before.get(k, 0.0)) * 1000 / args.messages) for k, v in split().items()
    )
    return [
        summarize(broker, label, "one at a time", one),
        dataclasses.replace(loaded, cpu_ms=per_msg, cpu_split=per_process),
    ]


def measure_tandem(
    machine: TandemMachine, broker: Broker, workdir: Path, args: argparse.Namespace
) -> list[Result]:
    extra: tuple[str, ...] = ()
    if not broker.embedded:
        resources = workdir / f"resources-{broker.name}"
        resources.mkdir(exist_ok=True)
        (resources / "pubsub.yaml").write_text(broker.component_yaml())
        extra = ("--resources-path", str(resources))
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    app_port = free_port()
    app: tuple[str, ...] = (sys.executable, APP, str(app_port), "pubsub", topic)
    if args.bulk:
        app += ("--bulk", str(args.bulk))
    first = len(machine.procs)
    sub = machine.run(f"sub-{broker.name}", *extra, "--app-port", str(app_port), "--", *app)
    sub_pid = machine.procs[-1].pid
    pub = sub if broker.name == "in-memory" else machine.run(f"pub-{broker.name}", *extra)
    pub_pid = machine.procs[-1].pid

    async def run() -> list[Result]:
        pool = HttpPool(http_client.tcp("127.0.0.1", pub), host=f"127.0.0.1:{pub}", limit=64)
        try:
            return await _run(pool)
        finally:
            await pool.close()

    async def _run(pool: HttpPool) -> list[Result]:
        async with aiohttp.ClientSession() as session:
            publish = http_publisher(pool, topic, bool(args.bulk))
            pids = [p.pid for p in machine.procs[first:]]
            roles = {"sub": [sub_pid]} if pub == sub else {"sub": [sub_pid], "pub": [pub_pid]}

            def split() -> dict[str, float]:
                out = {
                    f"{side} {role}": seconds
                    for side, roots in roles.items()
                    for role, seconds in tree_cpu_by_role(roots).items()
                }
                # The load generator, shown apart: not part of the path's figure.
                out[NOT_COUNTED] = own_cpu()
                return out

            return await _measure(
                broker.name,
                "tandem",
                publish,
                Arrivals(app_port, session),
                args,
                lambda: tree_cpu(pids),
                split,
            )

    # uvloop, as the runtime runs on it: the load generator's share of the box stays small.
    return uvloop.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-messages", type=int, default=200)
    parser.add_argument("--brokers", nargs="+", choices=BROKERS, default=list(BROKERS))
    parser.add_argument(
        "--bulk",
        type=int,
        default=0,
        help="a different workload: N messages per bulk publish, and a bulk subscription "
        "(maxMessagesCount N) delivering them; the baseline publishes with the component's "
        "bulk publish",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bps", dir="/tmp"))
    results: list[Result] = []
    try:
        with brokers(args.brokers, workdir) as configured, TandemMachine() as machine:
            for broker in configured:
                print(f"… {broker.name}", file=sys.stderr, flush=True)
                results += asyncio.run(measure_direct(broker, workdir, args))
                results += measure_tandem(machine, broker, workdir, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("| broker | path | load | messages | msg/s | p50 ms | p99 ms | CPU ms/msg |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(r.row())
    print()
    for r in results:
        if r.cpu_split:
            parts = ", ".join(f"{k} {v:.3f}" for k, v in sorted(r.cpu_split))
            print(f"{r.broker} tandem CPU ms/msg by process: {parts}")
    print()
    print(
        "| broker | tandem / direct msg/s | unloaded p50: tandem − direct ms | "
        "unloaded p99: tandem − direct ms | CPU per message: tandem / direct |"
    )
    print("|---|---|---|---|---|")
    for name in dict.fromkeys(r.broker for r in results):
        mine = {(r.path, r.mode == "one at a time"): r for r in results if r.broker == name}
        loaded = mine["tandem", False].rate / mine["direct", False].rate
        t1, d1 = mine["tandem", True], mine["direct", True]
        cpu = (mine["tandem", False].cpu_ms or 0) / (mine["direct", False].cpu_ms or 1)
        print(
            f"| {name} | {loaded:.0%} | {t1.p50_ms - d1.p50_ms:+.2f} | "
            f"{t1.p99_ms - d1.p99_ms:+.2f} | {cpu:.1f}× |"
        )


if __name__ == "__main__":
    main()
