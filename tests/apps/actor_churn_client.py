"""Keeps calling ``Counter.Add(1)`` on many actors with the SDK for a while, counting what
was acknowledged. argv: seconds, workers, actor count. Prints one JSON summary line."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from dapr.actor import ActorId, ActorProxy

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from counter_actor import CounterInterface  # noqa: E402


async def main() -> None:
    seconds, workers, count = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ids = [f"churn-{i}" for i in range(count)]
    proxies = {i: ActorProxy.create("Counter", ActorId(i), CounterInterface) for i in ids}
    attempts = dict.fromkeys(ids, 0)
    acked = dict.fromkeys(ids, 0)
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            actor_id = rng.choice(ids)
            attempts[actor_id] += 1
            try:
                await asyncio.wait_for(proxies[actor_id].Add(1), 30)
                acked[actor_id] += 1
            except Exception:
                errors += 1
                await asyncio.sleep(0.05)

    await asyncio.gather(*(worker(s) for s in range(workers)))
    print(json.dumps({"attempts": attempts, "acked": acked, "errors": errors}))


asyncio.run(main())
