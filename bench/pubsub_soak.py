"""Pub/sub soak: many messages, the subscriber's runtime killed (SIGKILL) halfway.

    python bench/pubsub_soak.py [--messages 10000] [--concurrency 32] [--brokers sqlite redis]

Per broker: a subscriber app (`bench/pubsub_app.py --record`) under `tandem run` and a
publisher sidecar. The bench publishes ``--messages`` events over HTTP; once half of them
reached the app, it kills the subscriber's runtime with SIGKILL (`tandem run` then stops
the app), starts the subscriber again (same app id, so the same consumer group) and waits
for every message whose publish was acknowledged (204). Reports losses (acknowledged,
never delivered: must be 0 — the run fails otherwise) and duplicates (delivered more than
once: allowed by at-least-once, expected around the kill).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
from _common import TandemMachine, tree_pids

from tandem.cli.ports import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import run_redis  # noqa: E402

APP = str(Path(__file__).resolve().parent / "pubsub_app.py")
REDIS = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pubsub}}
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "{address}"}}
  - {{name: processingTimeout, value: 2s}}
  - {{name: redeliverInterval, value: 500ms}}
"""


def delivered(record: Path) -> Counter[int]:
    if not record.exists():
        return Counter()
    counts: Counter[int] = Counter()
    for line in record.read_text().split("\n")[:-1]:  # a last line without "\n" is partial
        if line.strip():
            counts[json.loads(line)[0]] += 1
    return counts


def runtime_pid(tandem_run_pid: int) -> int:
    """The runtime (`python -m tandem.ext_proc`) started by that `tandem run`."""
    found = tree_pids([tandem_run_pid], "runtime")
    if not found:
        sys.exit(f"bench: no runtime under tandem run {tandem_run_pid}")
    return found[0]


def wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            sys.exit(f"bench: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)  # polling the app's record file, with a deadline


async def publish_all(port: int, topic: str, count: int, concurrency: int, acked: set[int]) -> None:
    url = f"http://127.0.0.1:{port}/v1.0/publish/pubsub/{topic}"
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(seq: int) -> None:
            body = json.dumps({"seq": seq, "t": time.time_ns()})
            async with sem:
                try:
                    async with session.post(
                        url, data=body, headers={"content-type": "application/json"}
                    ) as r:
                        if r.status == 204:
                            acked.add(seq)
                except aiohttp.ClientError:
                    pass

        await asyncio.gather(*(one(seq) for seq in range(count)))


def soak(
    machine: TandemMachine, broker: str, extra: tuple[str, ...], args: argparse.Namespace
) -> bool:
    topic = f"soak-{uuid.uuid4().hex[:8]}"
    record = machine.home / f"soak-{broker}.jsonl"

    def start_subscriber() -> int:
        port = free_port()
        app = (sys.executable, APP, str(port), "pubsub", topic, "--record", str(record))
        machine.run(f"soak-sub-{broker}", *extra, "--app-port", str(port), "--", *app)
        return machine.procs[-1].pid

    sub = start_subscriber()
    sub_proc = machine.procs[-1]
    pub = machine.run(f"soak-pub-{broker}", *extra)
    acked: set[int] = set()
    started = time.monotonic()
    publisher = threading.Thread(
        target=lambda: asyncio.run(publish_all(pub, topic, args.messages, args.concurrency, acked))
    )
    publisher.start()
    wait_for(lambda: len(delivered(record)) >= args.messages // 2, 300, "half the deliveries")
    os.kill(runtime_pid(sub), signal.SIGKILL)
    killed_at = len(delivered(record))
    sub_proc.wait(60)  # tandem run notices its runtime died and stops the app
    restarted_at = time.monotonic()
    start_subscriber()
    publisher.join()
    wait_for(lambda: acked <= set(delivered(record)), 300, "every acknowledged message")
    elapsed = time.monotonic() - started
    got = delivered(record)
    lost = sorted(acked - set(got))
    dups = {seq: n for seq, n in got.items() if n > 1}
    print(
        f"| {broker} | {args.messages:,} | {len(acked):,} | {killed_at:,} | "
        f"{len(got):,} | **{len(lost)}** | {sum(dups.values()) - len(dups)} "
        f"({len(dups)} messages) | {elapsed:.1f} | {restarted_at - started:.1f} |",
        flush=True,
    )
    return not lost and len(acked) == args.messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--brokers", nargs="+", choices=("sqlite", "redis"), default=["sqlite", "redis"]
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bsk", dir="/tmp"))
    print(
        "| broker | published | acknowledged | delivered at the kill | delivered (distinct) | "
        "lost | duplicate deliveries | seconds | kill at s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ok = True
    try:
        for broker in args.brokers:
            with TandemMachine() as machine:
                if broker == "sqlite":
                    ok &= soak(machine, broker, (), args)
                    continue
                with run_redis(workdir / "redis") as server:
                    resources = workdir / "resources-redis"
                    resources.mkdir(exist_ok=True)
                    (resources / "pubsub.yaml").write_text(REDIS.format(address=server.address))
                    ok &= soak(machine, broker, ("--resources-path", str(resources)), args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
