"""Outbox: commit → delivered latency of ``state.redis`` + ``pubsub.redis`` through real
`tandem run` sidecars, against a plain publish → delivered on the same sidecars in the
same run (the baseline).

    python bench/outbox.py [--messages 1000] [--concurrency 16] [--latency-messages 200]

One Redis; a writer sidecar (no app) whose ``orders`` store has ``outboxPublishPubsub:
pubsub`` and ``outboxPublishTopic``; a subscriber sidecar whose app (`bench/pubsub_app.py`)
records when each event arrives.

- **publish** (baseline): ``POST /v1.0/publish/pubsub/<topic>`` to the writer.
- **outbox**: ``POST /v1.0/state/orders/transaction`` with one upsert whose value is the
  message; the event the subscriber gets carries that value. On top of the publish it
  costs an internal intent publish, a transaction with its marker key, the relay's read of
  the intent and the marker, and the marker's delete.

Every message carries its send time; latency = arrival − send. One-at-a-time (unloaded)
and ``--concurrency`` in flight, as in `bench/pubsub.py`; prints a table and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import aiohttp
import orjson
from _common import TandemMachine, tree_cpu
from pubsub import Arrivals, Publish, Result, _measure, http_publisher

from tandem.blocks import http_client
from tandem.blocks.http_client import HttpPool
from tandem.cli.ports import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import run_redis  # noqa: E402

APP = str(Path(__file__).resolve().parent / "pubsub_app.py")

RESOURCES = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pubsub}}
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{redis}"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: orders}}
spec:
  type: state.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{redis}"}}
  - {{name: outboxPublishPubsub, value: pubsub}}
  - {{name: outboxPublishTopic, value: "{topic}"}}
"""


def transaction_publisher(session: aiohttp.ClientSession, port: int) -> Publish:
    url = f"http://127.0.0.1:{port}/v1.0/state/orders/transaction"

    async def publish(bodies: list[bytes]) -> None:
        (body,) = bodies
        op = {
            "operation": "upsert",
            "request": {"key": uuid.uuid4().hex, "value": orjson.loads(body)},
        }
        async with session.post(url, data=orjson.dumps({"operations": [op]})) as r:
            if r.status != 204:
                sys.exit(f"bench: transaction answered {r.status}: {await r.text()}")

    return publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-messages", type=int, default=200)
    parser.set_defaults(bulk=0)  # what pubsub._measure reads: one message per publish
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bob", dir="/tmp"))
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        with run_redis(workdir / "redis") as redis, TandemMachine() as machine:
            resources = workdir / "resources"
            resources.mkdir()
            (resources / "components.yaml").write_text(
                RESOURCES.format(redis=redis.address, topic=topic)
            )
            extra = ("--resources-path", str(resources))
            app_port = free_port()
            app = (sys.executable, APP, str(app_port), "pubsub", topic)
            machine.run("outbox-sub", *extra, "--app-port", str(app_port), "--", *app)
            writer = machine.run("outbox-writer", *extra)

            pids = [p.pid for p in machine.procs]

            async def run() -> list[Result]:
                connector = aiohttp.TCPConnector(limit=64)
                pool = HttpPool(
                    http_client.tcp("127.0.0.1", writer), host=f"127.0.0.1:{writer}", limit=64
                )
                async with aiohttp.ClientSession(connector=connector) as session:
                    arrivals = Arrivals(app_port, session)
                    await arrivals.wait_ready()
                    plain = http_publisher(pool, topic, bulk=False)
                    outbox = transaction_publisher(session, writer)

                    def cpu() -> float:
                        return tree_cpu(pids)

                    try:
                        return [
                            *await _measure("redis", "publish", plain, arrivals, args, cpu),
                            *await _measure("redis", "outbox", outbox, arrivals, args, cpu),
                        ]
                    finally:
                        await pool.close()

            results = asyncio.run(run())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        "| broker | path | load | messages | msg/s | p50 ms | p99 ms | CPU ms/msg (sidecars + app) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(r.row())
    mine = {(r.path, r.mode == "one at a time"): r for r in results}
    o1, p1 = mine["outbox", True], mine["publish", True]
    print()
    print(
        f"outbox / publish under load: {mine['outbox', False].rate / mine['publish', False].rate:.0%} "
        f"of the msg/s; unloaded p50 {o1.p50_ms - p1.p50_ms:+.2f} ms, "
        f"p99 {o1.p99_ms - p1.p99_ms:+.2f} ms"
    )


if __name__ == "__main__":
    main()
